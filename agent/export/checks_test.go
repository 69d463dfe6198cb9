package export_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/agent/export"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// The exporter seals through gitops/seal, so it gets its checks: sealing for a peer certificate
// past its dates logs a warning (the clock is the exporter's Now), and a Secret the API server
// takes (900 kB) but whose SealedSecret it would not (1.2 MB) fails the run with the sizes,
// committing nothing.
func TestExporterChecksCertificateAndSize(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a Git server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := newExportRig(t, false, wait.Backoff{Duration: 50 * time.Millisecond, Steps: 2})
	api := r.east.Clientset.CoreV1().Secrets("tsb")
	if _, err := api.Create(ctx, newSecret(t, "iam-signing-key"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	newExporter := func(names []string, now time.Time, logs *testrig.LogBuffer) *export.Exporter {
		t.Helper()
		exp, err := export.New(r.east.Clientset, r.writer, export.Options{Self: "east", Peer: "west", Names: names,
			Key: random(t, "hmac-key-32-bytes-at-least"), Layout: r.layout, Now: func() time.Time { return now },
			Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return exp
	}

	// The rig's peer certificate is valid for an hour from now: a day later it has expired.
	logs := &testrig.LogBuffer{}
	rep, err := newExporter([]string{"iam-signing-key"}, time.Now().Add(24*time.Hour), logs).RunOnce(ctx)
	if err != nil || rep.Commit == "" {
		t.Fatalf("export: %+v, %v", rep, err)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="sealing for a certificate outside its validity dates`) ||
		!strings.Contains(logs.String(), "secret=iam-signing-key") || !strings.Contains(logs.String(), "the sealing certificate has expired") {
		t.Errorf("no warning about the expired certificate:\n%s", logs.String())
	}

	big := newSecret(t, "big-blob")
	big.Data["blob"] = bytes.Repeat([]byte("x"), 900_000)
	if _, err := api.Create(ctx, big, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server refuses a 900 kB Secret: %v", err)
	}
	head := r.remoteHead(t)
	logs = &testrig.LogBuffer{}
	_, err = newExporter([]string{"iam-signing-key", "big-blob"}, time.Now(), logs).RunOnce(ctx)
	if !errors.Is(err, seal.ErrTooLarge) || !strings.Contains(err.Error(), "sealing tsb/big-blob: its data is 9000") {
		t.Errorf("a Secret too large once sealed: err = %v", err)
	}
	if got := r.remoteHead(t); got != head {
		t.Errorf("a commit was made: %s → %s", head, got)
	}
	if strings.Contains(logs.String(), "validity") {
		t.Errorf("a valid certificate was warned about:\n%s", logs.String())
	}
}
