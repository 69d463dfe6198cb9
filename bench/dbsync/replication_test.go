//go:build dbsyncbench

package dbsync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/pgcopy/pgcopytest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const replPassword = "bench-Pa55word"

// TestReplicationLag measures mpha's logical replication under a steady write load against
// PostgreSQL's own streaming replica of the same active, in the same run: one active (a
// TSB-shaped database), one standby subscribed by mpha's agent code (database.Replicator), one
// streaming replica. A writer commits MPHA_BENCH_LAG_RATE transactions a second (default 200:
// a 1 KiB row inserted and a configuration row updated, as the MP writes) for
// MPHA_BENCH_LAG_SECONDS (default 60). Every 20 ms each follower's newest applied row is read:
// its lag is how long ago the first row it lacks was acknowledged on the active (0 when it has
// them all). Every 100 ms the WAL each is behind is read on the active. Then, with the writer
// still writing, the planned failover's promotion runs as the agent runs it, and the rows the
// active acknowledged are looked for on the new active: the RPO.
func TestReplicationLag(t *testing.T) {
	rate, secs := envInt("MPHA_BENCH_LAG_RATE", 200), envInt("MPHA_BENCH_LAG_SECONDS", 60)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second+10*time.Minute)
	defer cancel()
	server := func() *testrig.Postgres {
		p := testrig.StartPostgresWith(t, testrig.PostgresOptions{Logical: true})
		exec1(ctx, t, p.DSN("postgres"), "CREATE ROLE tsb LOGIN CREATEDB REPLICATION PASSWORD '"+replPassword+"'", "CREATE DATABASE tsb OWNER tsb")
		return p
	}
	active, standby := server(), server()
	mp := func(p *testrig.Postgres) string { return pgcopytest.DSN(p, replPassword) }
	if err := pgcopytest.Generate(ctx, mp(active), "tsb", 20000); err != nil {
		t.Fatal(err)
	}
	exec1(ctx, t, mp(active), "CREATE TABLE public.bench_writes (id bigint PRIMARY KEY, payload bytea NOT NULL)")
	replica := active.StartReplica(t)
	var size int64
	if c, err := pgx.Connect(ctx, mp(active)); err != nil {
		t.Fatal(err)
	} else {
		err = c.QueryRow(ctx, "SELECT pg_database_size('tsb')").Scan(&size)
		c.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
	}

	role := func(isActive bool) func(context.Context, bool) (bool, int64, error) {
		return func(context.Context, bool) (bool, int64, error) { return isActive, 1, nil }
	}
	pub, err := database.NewReplicator(database.ReplicationOptions{Cluster: "east", Self: mp(active), Admin: active.DSN("tsb"), Peer: mp(standby), Active: role(true)})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := database.NewReplicator(database.ReplicationOptions{Cluster: "west", Self: mp(standby), Admin: standby.DSN("tsb"), Peer: mp(active), Active: role(false)})
	if err != nil {
		t.Fatal(err)
	}
	seeded := time.Now()
	if err := pub.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "the subscription's initial copy", 5*time.Minute, func(ctx context.Context) error {
		if err := sub.Pass(ctx); err != nil {
			return err
		}
		if st := sub.State(); st.Lag == nil || !st.Lag.Synced || st.Lag.Bytes != 0 {
			return fmt.Errorf("%s", st.Detail)
		}
		return nil
	})
	initial := time.Since(seeded)

	w := &benchWriter{}
	stopWriter := w.start(ctx, t, mp(active), rate)
	var samplers sync.WaitGroup
	sampleCtx, stopSampling := context.WithCancel(ctx)
	logical, streaming := &follower{name: "logical subscription (mpha)"}, &follower{name: "streaming replica (PostgreSQL)"}
	for _, f := range []struct {
		f   *follower
		dsn string
	}{{logical, standby.DSN("tsb")}, {streaming, replica.DSN("tsb")}} {
		samplers.Go(func() { f.f.sampleRows(sampleCtx, t, f.dsn, w) })
	}
	samplers.Go(func() { sampleBytes(sampleCtx, t, active.DSN("tsb"), logical, streaming) })
	time.Sleep(time.Duration(secs) * time.Second)
	stopSampling()
	samplers.Wait()
	committed := w.count()

	// The planned failover, with the writer still writing: fence, catch up, promote.
	began := time.Now()
	step, err := sub.OnMerged(ctx, event.FailoverStatus{Event: "bench", Epoch: 2})
	promotion := time.Since(began)
	if err != nil || step.Result != event.StepDone {
		t.Fatalf("the promotion: %+v, %v", step, err)
	}
	werr := stopWriter()
	acked := w.count()
	var have int64
	c, err := pgx.Connect(ctx, mp(standby))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(ctx, "SELECT count(*) FROM public.bench_writes WHERE id <= $1", acked).Scan(&have); err != nil {
		t.Fatal(err)
	}

	fmt.Printf("== continual replication under a steady write load, both followers of one active in the same run\n")
	fmt.Printf("load: %d tx/s for %d s (a 1 KiB row inserted and a configuration row updated each), %d committed (%.0f tx/s reached)\n",
		rate, secs, committed, float64(committed)/float64(secs))
	fmt.Printf("initial copy of the subscription (schema by mpha, then the rows of a %.0f MiB database): %.1f s\n", float64(size)/(1<<20), initial.Seconds())
	fmt.Printf("%-32s %9s %9s %9s %12s %12s\n", "follower", "lag p50", "lag p99", "lag max", "behind p99", "behind max")
	for _, f := range []*follower{logical, streaming} {
		fmt.Printf("%-32s %8.3fs %8.3fs %8.3fs %12s %12s\n", f.name, pct(f.lag, 50), pct(f.lag, 99), pct(f.lag, 100),
			kib(pct(f.behind, 99)), kib(pct(f.behind, 100)))
	}
	fmt.Printf("== planned failover under the same load (database.Replicator.OnMerged)\n")
	fmt.Printf("promotion: %.2f s (%s)\n", promotion.Seconds(), step.Detail)
	fmt.Printf("rows the active acknowledged: %d; on the new active: %d; RPO %d rows (the writer ended with: %v)\n", acked, have, acked-have,
		strings.SplitN(fmt.Sprint(werr), "(", 2)[0])
	if have != acked {
		t.Errorf("RPO: %d acknowledged rows missing on the new active", acked-have)
	}
}

// benchWriter commits rows 1, 2, … and records when each was acknowledged.
type benchWriter struct {
	mu    sync.Mutex
	acked []time.Time // acked[i-1]: when row i's commit returned
}

func (w *benchWriter) count() int64 { w.mu.Lock(); defer w.mu.Unlock(); return int64(len(w.acked)) }

// firstMissing is when row id was acknowledged, if it was.
func (w *benchWriter) ackedAt(id int64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if id < 1 || id > int64(len(w.acked)) {
		return time.Time{}, false
	}
	return w.acked[id-1], true
}

// start writes at rate transactions a second until an error (the fence) or stop; stop returns
// the error that ended it.
func (w *benchWriter) start(ctx context.Context, t *testing.T, dsn string, rate int) (stop func() error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	done, ended := make(chan struct{}), make(chan error, 1)
	payload := []byte(strings.Repeat("x", 1024))
	go func() {
		defer c.Close(context.Background())
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for id := int64(1); ; id++ {
			select {
			case <-done:
				ended <- nil
				return
			case <-tick.C:
			}
			b := &pgx.Batch{}
			b.Queue("INSERT INTO public.bench_writes (id, payload) VALUES ($1, $2)", id, payload)
			b.Queue("UPDATE public.config_01 SET spec = jsonb_set(spec, '{n}', to_jsonb($1::int8)) WHERE id = 1 + $1 % 50", id)
			if err := c.SendBatch(ctx, b).Close(); err != nil { // one implicit transaction
				ended <- err
				return
			}
			w.mu.Lock()
			w.acked = append(w.acked, time.Now())
			w.mu.Unlock()
		}
	}()
	return func() error {
		close(done)
		return <-ended
	}
}

// follower is one follower's samples.
type follower struct {
	name   string
	lag    []float64 // seconds
	behind []float64 // bytes of WAL
}

func (f *follower) sampleRows(ctx context.Context, t *testing.T, dsn string, w *benchWriter) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close(context.Background())
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var applied int64
		if err := c.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM public.bench_writes").Scan(&applied); err != nil {
			if ctx.Err() == nil {
				t.Error(err)
			}
			return
		}
		now := time.Now()
		lag := 0.0
		if at, ok := w.ackedAt(applied + 1); ok && at.Before(now) {
			lag = now.Sub(at).Seconds()
		}
		f.lag = append(f.lag, lag)
	}
}

func sampleBytes(ctx context.Context, t *testing.T, dsn string, logical, streaming *follower) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close(context.Background())
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var l, s *int64
		err := c.QueryRow(ctx, `SELECT (SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), confirmed_flush_lsn)::int8 FROM pg_replication_slots WHERE slot_name = 'mpha_west'),
       (SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), replay_lsn)::int8 FROM pg_stat_replication WHERE application_name <> 'mpha_west' LIMIT 1)`).Scan(&l, &s)
		if err != nil {
			if ctx.Err() == nil {
				t.Error(err)
			}
			return
		}
		if l != nil {
			logical.behind = append(logical.behind, float64(max(*l, 0)))
		}
		if s != nil {
			streaming.behind = append(streaming.behind, float64(max(*s, 0)))
		}
	}
}

func pct(xs []float64, p int) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*p+99)/100-1)
	return s[max(i, 0)]
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
