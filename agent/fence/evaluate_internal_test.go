package fence

import (
	"strings"
	"testing"

	"github.com/mpha-dev/mpha/gitops"
)

func TestEvaluate(t *testing.T) {
	pair := func(active string) *gitops.Pair {
		return &gitops.Pair{Name: "tsb-mp", Active: active, Epoch: 4,
			Clusters: []gitops.ClusterRef{{Name: "east"}, {Name: "west"}}}
	}
	tests := []struct {
		name    string
		active  string
		ready   map[string]int32
		split   bool
		message string
	}{
		{"active serving", "west", map[string]int32{"tsb": 2, "iam": 1}, false, "west is active in pair.yaml (epoch 4)"},
		{"active scaled down", "west", map[string]int32{"tsb": 0}, false, "west is active"},
		{"standby scaled down", "east", map[string]int32{"tsb": 0, "iam": 0}, false, "none of its Deployments is ready"},
		{"standby without Deployments", "east", map[string]int32{}, false, "none of its Deployments is ready"},
		{"standby serving tsb", "east", map[string]int32{"tsb": 1, "iam": 0}, true,
			"split brain: west is standby in pair.yaml (epoch 4, east active) but Deployment tsb/tsb (1 ready) serves"},
		{"standby serving both", "east", map[string]int32{"tsb": 1, "iam": 3}, true, "but Deployments tsb/iam (3 ready), tsb/tsb (1 ready) serve"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := evaluate("west", "tsb", pair(tc.active), tc.ready)
			if st.SplitBrain != tc.split {
				t.Errorf("SplitBrain = %v, want %v (%s)", st.SplitBrain, tc.split, st.Message)
			}
			if !strings.Contains(st.Message, tc.message) {
				t.Errorf("Message = %q, want it to contain %q", st.Message, tc.message)
			}
			if st.Active != tc.active || st.Epoch != 4 {
				t.Errorf("Active, Epoch = %q, %d; want %q, 4", st.Active, st.Epoch, tc.active)
			}
		})
	}
}
