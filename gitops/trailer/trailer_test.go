package trailer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops/failback"
	"github.com/mpha-dev/mpha/gitops/plan"
	"github.com/mpha-dev/mpha/gitops/trailer"
)

func TestFormatMatchesTheContract(t *testing.T) {
	t.Parallel()
	got, err := trailer.Format("Fail over tsb-mp from east to west\n\nThe active MP stopped answering.\n", []trailer.Trailer{
		{Key: trailer.Event, Value: "ev-1"}, {Key: trailer.Epoch, Value: "8"}, {Key: trailer.From, Value: "east"}, {Key: trailer.To, Value: "west"},
		{Key: trailer.Mode, Value: "planned"}, {Key: trailer.RequestedBy, Value: "alice@example.com"}, {Key: trailer.Reason, Value: "east MP down since 10:02"},
		{Key: trailer.Preflight, Value: "pass"}, {Key: trailer.Kind, Value: "failover"},
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
		{Key: "Event", Value: "x"}, {Key: "Mpha-", Value: "x"}, {Key: "Mpha-Reason", Value: "two\nlines"}, {Key: "Mpha-Reason", Value: ""},
		{Key: "Mpha-Reason", Value: " padded"}, {Key: "Mpha-Bad Key", Value: "x"},
	} {
		if _, err := trailer.Format("subject", []trailer.Trailer{tr}); !errors.Is(err, trailer.ErrInvalid) {
			t.Errorf("Format(%+v): err = %v, want ErrInvalid", tr, err)
		}
	}
}

func TestParseIgnoresOtherTrailersAndBodies(t *testing.T) {
	t.Parallel()
	msg := "subject\n\nMpha-Kind: not a trailer, in the body\n\nSigned-off-by: a <a@b>\nMpha-Kind: secrets\r\nMpha-Cluster: east\n"
	want := []trailer.Trailer{{Key: "Mpha-Kind", Value: "secrets"}, {Key: "Mpha-Cluster", Value: "east"}}
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
		ts, bad := trailer.ParseAll(msg)
		for _, tr := range ts {
			_ = trailer.Check(tr)
		}
		for _, err := range bad {
			if !errors.Is(err, trailer.ErrInvalid) {
				t.Errorf("ParseAll(%q): %v does not wrap ErrInvalid", msg, err)
			}
		}
		in := []trailer.Trailer{{Key: k1, Value: v1}, {Key: k2, Value: v2}}
		out, err := trailer.Format(msg, in)
		if err != nil {
			return
		}
		if diff := cmp.Diff(in, trailer.Parse(out)); diff != "" {
			t.Errorf("format → parse (-in +out):\n%s\nmessage:\n%q", diff, out)
		}
	})
}

// ParseAll reports each line that starts like an Mpha-* trailer and is not one, quoted (control
// characters escaped), and ignores other trailers and text.
func TestParseAllReportsMalformedLines(t *testing.T) {
	t.Parallel()
	msg := "subject\n\nSigned-off-by: a <a@b>\nMpha-Kind: secrets\nMpha-Epoch:7\nmpha-cluster: east\nMpha-Reason:  padded\nMpha-Bad Key: x\nMpha-From: \x1b[31meast\nnot a trailer\n"
	ts, bad := trailer.ParseAll(msg)
	want := []trailer.Trailer{{Key: "Mpha-Kind", Value: "secrets"}, {Key: "Mpha-From", Value: "\x1b[31meast"}}
	if diff := cmp.Diff(want, ts); diff != "" {
		t.Errorf("trailers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ts, trailer.Parse(msg)); diff != "" {
		t.Errorf("Parse differs from ParseAll (-ParseAll +Parse):\n%s", diff)
	}
	wantBad := []string{
		`invalid trailer: "Mpha-Epoch:7" is not "Mpha-Key: value"`,
		`"mpha-cluster: east": invalid trailer: key "mpha-cluster" is not Mpha-Word(-Word)*`,
		`"Mpha-Reason:  padded": invalid trailer: Mpha-Reason: the value must be one non-empty line without surrounding spaces`,
		`"Mpha-Bad Key: x": invalid trailer: key "Mpha-Bad Key" is not Mpha-Word(-Word)*`,
	}
	var got []string
	for _, err := range bad {
		if !errors.Is(err, trailer.ErrInvalid) {
			t.Errorf("%v does not wrap ErrInvalid", err)
		}
		got = append(got, err.Error())
	}
	if diff := cmp.Diff(wantBad, got); diff != "" {
		t.Errorf("malformed lines (-want +got):\n%s", diff)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1000)
	tests := []struct {
		key, value string
		want       string // "" for valid; else a part of the error
	}{
		{trailer.Kind, "failover", ""},
		{trailer.Kind, "failback-prepare", ""},
		{trailer.Kind, "../../etc/passwd", `Mpha-Kind: kind "../../etc/passwd": want 1 to 63 lowercase letters`},
		{trailer.Kind, long, `kind "` + strings.Repeat("x", 64) + `"…: want 1 to 63 lowercase letters`},
		{trailer.Cluster, "east", ""},
		{trailer.From, "\x1b[31meast", `Mpha-From: cluster name "\x1b[31meast"`},
		{trailer.To, "West", `Mpha-To: cluster name "West"`},
		{trailer.Epoch, "8", ""},
		{trailer.Epoch, "0", ""},
		{trailer.Epoch, "banana", `Mpha-Epoch: "banana" is not a non-negative integer`},
		{trailer.Epoch, "-1", `Mpha-Epoch: "-1" is not a non-negative integer`},
		{trailer.Epoch, "99999999999999999999", `is not a non-negative integer`},
		{trailer.Mode, "drill", ""},
		{trailer.Mode, "yolo", `Mpha-Mode: "yolo": want planned, emergency, drill`},
		{trailer.Preflight, "forced", ""},
		{trailer.Preflight, "skipped", `Mpha-Preflight: "skipped": want pass, warn, forced`},
		{trailer.Reason, "anything \x1b at all", ""},
		{"Mpha-Future-Key", "anything", ""},
	}
	for _, tc := range tests {
		err := trailer.Check(trailer.Trailer{Key: tc.key, Value: tc.value})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Check(%s: %q) = %v, want nil", tc.key, tc.value, err)
		case tc.want != "" && (!errors.Is(err, trailer.ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Check(%s: %.20q) = %v, want ErrInvalid containing %q", tc.key, tc.value, err, tc.want)
		}
	}
}

// The words Check accepts are the ones the failover plan writes.
func TestCheckAcceptsWhatThePlanWrites(t *testing.T) {
	t.Parallel()
	for _, tr := range []trailer.Trailer{
		{Key: trailer.Mode, Value: plan.ModePlanned}, {Key: trailer.Mode, Value: plan.ModeEmergency}, {Key: trailer.Mode, Value: plan.ModeDrill},
		{Key: trailer.Preflight, Value: plan.PreflightPass}, {Key: trailer.Preflight, Value: plan.PreflightWarn}, {Key: trailer.Preflight, Value: plan.PreflightForced},
		{Key: trailer.Kind, Value: failback.Kind},
	} {
		if err := trailer.Check(tr); err != nil {
			t.Errorf("Check(%+v) = %v", tr, err)
		}
	}
}
