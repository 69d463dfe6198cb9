package testrig_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// Start-up time (ns/op) and resident memory of each part of the rig, for the closing notes and
// the README: `make bench`.
func BenchmarkRigStart(b *testing.B) {
	if testing.Short() {
		b.Skip("starts real components")
	}
	b.Run("cluster", func(b *testing.B) {
		for b.Loop() {
			c := testrig.StartCluster(b, "bench")
			b.StopTimer()
			reportRSS(b, c.Process(), c.Etcd.Process())
			c.Stop(b)
			b.StartTimer()
		}
	})
	b.Run("postgres+replica", func(b *testing.B) {
		for b.Loop() {
			p := testrig.StartPostgres(b)
			r := p.StartReplica(b)
			b.StopTimer()
			reportRSS(b, p.Process(), r.Process())
			r.Stop(b)
			p.Stop(b)
			b.StartTimer()
		}
	})
	b.Run("gitea", func(b *testing.B) {
		for b.Loop() {
			g := testrig.StartGitea(b)
			b.StopTimer()
			reportRSS(b, g.Process())
			stop(b, g.Process())
			b.StartTimer()
		}
	})
	b.Run("flux+sealed-secrets", func(b *testing.B) {
		b.StopTimer()
		c := testrig.StartCluster(b, "bench")
		b.StartTimer()
		for b.Loop() {
			f := testrig.StartFlux(b, c)
			s := testrig.StartSealedSecrets(b, c)
			b.StopTimer()
			reportRSS(b, append(f.Processes(), s.Process())...)
			stop(b, append(f.Processes(), s.Process())...)
			b.StartTimer()
		}
	})
	b.Run("named", func(b *testing.B) {
		for b.Loop() {
			d := testrig.StartDNS(b, testrig.DNSOptions{A: mpAddrs})
			b.StopTimer()
			reportRSS(b, d.Process())
			stop(b, d.Process())
			b.StartTimer()
		}
	})
	// Start-up to the first sync: the DNSEndpoints listed and the zone transferred.
	b.Run("external-dns", func(b *testing.B) {
		b.StopTimer()
		c := testrig.StartCluster(b, "bench")
		prepareDNSEndpoints(b, c)
		d := testrig.StartDNS(b, testrig.DNSOptions{A: mpAddrs})
		b.StartTimer()
		for b.Loop() {
			e := testrig.StartExternalDNS(b, c, d, testrig.ExternalDNSOptions{})
			b.StopTimer()
			reportRSS(b, e.Process())
			e.Stop(b)
			b.StartTimer()
		}
	})
}

// BenchmarkDNSEndpointToAnswer: a DNSEndpoint's target changed in the API server → named answers
// the new target, through the running external-dns (a sync a second). Each change comes at a
// random moment of that second. Reports p50 and p99.
func BenchmarkDNSEndpointToAnswer(b *testing.B) {
	if testing.Short() {
		b.Skip("starts real components")
	}
	c := testrig.StartCluster(b, "bench")
	prepareDNSEndpoints(b, c)
	d := testrig.StartDNS(b, testrig.DNSOptions{A: mpAddrs})
	testrig.StartExternalDNS(b, c, d, testrig.ExternalDNSOptions{})
	targets := []string{"mp1.tsb.example.com", "mp2.tsb.example.com"}
	applyFloating(b, c, targets[0], 1)
	waitFloating(b, d, targets[0], time.Minute)
	var lat []time.Duration
	for i := 1; b.Loop(); i++ {
		b.StopTimer()
		time.Sleep(rand.N(time.Second))
		b.StartTimer()
		start := time.Now()
		applyFloating(b, c, targets[i%2], 1)
		for {
			if got, err := floating(context.Background(), d); err == nil && got == targets[i%2] {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("%s still not %s after a minute", floatingName, targets[i%2])
			}
			time.Sleep(10 * time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

func reportRSS(b *testing.B, ps ...*testrig.Process) {
	b.Helper()
	var total int64
	for _, p := range ps {
		rss, err := p.GroupRSS()
		if err != nil {
			b.Fatal(err)
		}
		total += rss
	}
	b.ReportMetric(float64(total)/(1<<20), "MiB-rss")
}

func stop(b *testing.B, ps ...*testrig.Process) {
	b.Helper()
	for _, p := range ps {
		if err := p.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}
