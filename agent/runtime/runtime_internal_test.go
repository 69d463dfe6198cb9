package runtime

import (
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// The agent's clients get a rate fit for by-name reads unless the kubeconfig chose one, and the
// caller's configuration is not changed.
func TestClientConfig(t *testing.T) {
	t.Parallel()
	in := &rest.Config{Host: "https://127.0.0.1:6443"}
	got := clientConfig(in)
	if got.QPS != clientQPS || got.Burst != clientBurst || got.Host != in.Host {
		t.Errorf("from client-go's defaults: QPS %v burst %d host %q", got.QPS, got.Burst, got.Host)
	}
	if in.QPS != 0 || in.Burst != 0 {
		t.Errorf("the caller's configuration changed: QPS %v burst %d", in.QPS, in.Burst)
	}
	for name, rc := range map[string]*rest.Config{
		"QPS set":          {QPS: 7},
		"burst set":        {Burst: 3},
		"a limiter of its": {RateLimiter: flowcontrol.NewFakeAlwaysRateLimiter()},
	} {
		if got := clientConfig(rc); got != rc {
			t.Errorf("%s: replaced the caller's choice (QPS %v burst %d)", name, got.QPS, got.Burst)
		}
	}
}
