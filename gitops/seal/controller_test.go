package seal_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// What Marshal writes, applied to the standby cluster, is unsealed by the real sealed-secrets
// controller into a Secret with identical data, type and labels.
func TestRealControllerUnsealsTheCommittedFile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and the sealed-secrets controller")
	}
	t.Parallel()
	west := testrig.StartCluster(t, "west")
	ctl := testrig.StartSealedSecrets(t, west)
	cert, err := seal.ParseCert(ctl.Cert(t))
	if err != nil {
		t.Fatal(err)
	}
	s := signingKey(t)
	ss, err := seal.Seal(cert, hmacKey, s)
	if err != nil {
		t.Fatal(err)
	}
	file, err := seal.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	west.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"), file)
	testrig.Eventually(t, "the controller to unseal iam-signing-key", time.Minute, func(ctx context.Context) error {
		_, err := west.Clientset.CoreV1().Secrets("tsb").Get(ctx, "iam-signing-key", metav1.GetOptions{})
		return err
	})
	got, err := west.Clientset.CoreV1().Secrets("tsb").Get(context.Background(), "iam-signing-key", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Data) != len(s.Data) {
		t.Errorf("unsealed %d keys, want %d", len(got.Data), len(s.Data))
	}
	for k, v := range s.Data {
		if !bytes.Equal(got.Data[k], v) {
			t.Errorf("key %s differs after unsealing", k)
		}
	}
	if got.Type != s.Type || got.Labels["app"] != "iam" {
		t.Errorf("type %q labels %v, want %q and app=iam", got.Type, got.Labels, s.Type)
	}
}
