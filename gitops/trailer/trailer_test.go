package trailer_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops/trailer"
)

func TestFormatMatchesTheContract(t *testing.T) {
	t.Parallel()
	got, err := trailer.Format("Fail over tsb-mp from east to west\n\nThe active MP stopped answering.\n", []trailer.Trailer{
		{trailer.Event, "ev-1"}, {trailer.Epoch, "8"}, {trailer.From, "east"}, {trailer.To, "west"},
		{trailer.Mode, "planned"}, {trailer.RequestedBy, "alice@example.com"}, {trailer.Reason, "east MP down since 10:02"},
		{trailer.Preflight, "pass"}, {trailer.Kind, "failover"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `Fail over tsb-mp from east to west

The active MP stopped answering.

Mpha-Event: ev-1
Mpha-Epoch: 8
Mpha-From: east
Mpha-To: west
Mpha-Mode: planned
Mpha-Requested-By: alice@example.com
Mpha-Reason: east MP down since 10:02
Mpha-Preflight: pass
Mpha-Kind: failover
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
	if v, ok := trailer.Get(trailer.Parse(got), trailer.Epoch); !ok || v != "8" {
		t.Errorf("Get(Epoch) = %q, %v", v, ok)
	}
}

func TestFormatRefusesWhatGitWouldMangle(t *testing.T) {
	t.Parallel()
	for _, tr := range []trailer.Trailer{
		{"Event", "x"}, {"Mpha-", "x"}, {"Mpha-Reason", "two\nlines"}, {"Mpha-Reason", ""},
		{"Mpha-Reason", " padded"}, {"Mpha-Bad Key", "x"},
	} {
		if _, err := trailer.Format("subject", []trailer.Trailer{tr}); !errors.Is(err, trailer.ErrInvalid) {
			t.Errorf("Format(%+v): err = %v, want ErrInvalid", tr, err)
		}
	}
}

func TestParseIgnoresOtherTrailersAndBodies(t *testing.T) {
	t.Parallel()
	msg := "subject\n\nMpha-Kind: not a trailer, in the body\n\nSigned-off-by: a <a@b>\nMpha-Kind: secrets\r\nMpha-Cluster: east\n"
	want := []trailer.Trailer{{"Mpha-Kind", "secrets"}, {"Mpha-Cluster", "east"}}
	if diff := cmp.Diff(want, trailer.Parse(msg)); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	if got := trailer.Parse("Mpha-Kind: x"); got != nil {
		t.Errorf("a subject alone has no trailers, got %v", got)
	}
}

// FuzzParse: parsing never panics, and trailers that validate survive format → parse.
func FuzzParse(f *testing.F) {
	f.Add("subject", "Mpha-Kind", "secrets", "Mpha-Reason", "east down")
	f.Add("s\n\nbody\n\nMpha-X: y", "Mpha-A-B", "c: d", "Mpha-Q", "z")
	f.Fuzz(func(t *testing.T, msg, k1, v1, k2, v2 string) {
		trailer.Parse(msg)
		in := []trailer.Trailer{{k1, v1}, {k2, v2}}
		out, err := trailer.Format(msg, in)
		if err != nil {
			return
		}
		if diff := cmp.Diff(in, trailer.Parse(out)); diff != "" {
			t.Errorf("format → parse (-in +out):\n%s\nmessage:\n%q", diff, out)
		}
	})
}
