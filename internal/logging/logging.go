// Package logging builds the process's slog.Logger from the --log-format and --log-level flags and
// routes klog (client-go's logger) into it. It imports nothing of mpha.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"k8s.io/klog/v2"
)

// Formats lists the accepted --log-format values.
var Formats = []string{"text", "json"}

// Options selects the logger's encoding and threshold.
type Options struct {
	Format string // text | json
	Level  string // debug | info | warn | error
}

// New returns a logger writing to w.
func New(w io.Writer, o Options) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.Level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", o.Level)
	}
	ho := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(o.Format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", o.Format)
	}
}

// RouteKlog sends client-go's klog output through l, so a cluster's logs have one format.
// klog keeps a process-wide logger: only the binary's main path calls this, never a library.
func RouteKlog(l *slog.Logger) {
	klog.SetSlogLogger(l)
}
