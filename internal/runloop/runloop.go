// Package runloop runs an agent loop's reconcile function: on a signal (after a debounce that
// lets a burst of changes join one run), on a resync timer, and again after a failure with a
// growing delay. Watch handlers only Signal; the run recomputes everything, so a failed run loses
// nothing. One pending signal is enough: signals never block.
package runloop

import (
	"context"
	"log/slog"
	"time"
)

// Options configure a Loop.
type Options struct {
	// Name appears in the logs ("secrets export").
	Name string
	// Debounce is how long a run waits after the first signal (default 2s); it is also the first
	// retry delay after a failure.
	Debounce time.Duration
	// Resync runs the loop without a signal (default 1m); retry delays grow up to it.
	Resync time.Duration
	// Waiting, if set, marks errors that mean "not yet" (logged at info, not warn).
	Waiting func(error) bool
	Logger  *slog.Logger
}

// Loop runs one reconcile function. Create it with New; Signal may be called before Run.
type Loop struct {
	opts    Options
	trigger chan struct{}
}

// New fills the defaults of opts.
func New(opts Options) *Loop {
	if opts.Debounce <= 0 {
		opts.Debounce = 2 * time.Second
	}
	if opts.Resync <= 0 {
		opts.Resync = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Loop{opts: opts, trigger: make(chan struct{}, 1)}
}

// Signal schedules a run without blocking.
func (l *Loop) Signal() {
	select {
	case l.trigger <- struct{}{}:
	default:
	}
}

// Run calls run once at the start, then on every signal and resync, until ctx ends. It returns
// nil when ctx ends: a failed run is logged and retried, never returned.
func (l *Loop) Run(ctx context.Context, run func(context.Context) error) error {
	l.Signal()
	resync := time.NewTicker(l.opts.Resync)
	defer resync.Stop()
	retry := l.opts.Debounce
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resync.C:
		case <-l.trigger:
			select { // let the rest of a burst arrive
			case <-ctx.Done():
				return nil
			case <-time.After(l.opts.Debounce):
			}
		}
		select { // what arrived during the wait joins this run
		case <-l.trigger:
		default:
		}
		err := run(ctx)
		switch {
		case err == nil || ctx.Err() != nil:
			retry = l.opts.Debounce
			continue
		case l.opts.Waiting != nil && l.opts.Waiting(err):
			l.opts.Logger.Info(l.opts.Name+" waits", "error", err)
		default:
			l.opts.Logger.Warn(l.opts.Name+" failed; retrying", "error", err, "in", retry)
		}
		time.AfterFunc(retry, l.Signal)
		retry = min(2*retry, l.opts.Resync)
	}
}

// SignalOn signals the loop each time the channel subscribe returns receives (another part's
// change: this cluster's Flux applied a revision), until ctx ends. Run it in its own goroutine.
func (l *Loop) SignalOn(ctx context.Context, subscribe func() (<-chan struct{}, func())) {
	ch, stop := subscribe()
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			l.Signal()
		}
	}
}
