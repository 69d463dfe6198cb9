package testrig_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// The controller serves its certificate and unseals a SealedSecret applied to the cluster; the
// plaintext never appears in what was applied.
func TestSealedSecretsUnseal(t *testing.T) {
	integration(t)
	t.Parallel()
	c := testrig.StartCluster(t, "west")
	s := testrig.StartSealedSecrets(t, c)
	c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"))
	const plain = "jwks-plaintext-value"
	doc := sealSecret(t, s.Cert(t), "tsb", "tsb-iam-jwks", "jwks", plain)
	if strings.Contains(doc, plain) {
		t.Fatal("the SealedSecret holds the plaintext")
	}
	c.Apply(t, []byte(doc))
	testrig.Eventually(t, "the controller to unseal tsb-iam-jwks", time.Minute, func(ctx context.Context) error {
		_, err := c.Clientset.CoreV1().Secrets("tsb").Get(ctx, "tsb-iam-jwks", metav1.GetOptions{})
		return err
	})
	sec, err := c.Clientset.CoreV1().Secrets("tsb").Get(context.Background(), "tsb-iam-jwks", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["jwks"]) != plain {
		t.Fatal("the unsealed secret holds the wrong value")
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].Kind != "SealedSecret" {
		t.Errorf("owner references = %+v, want the SealedSecret", sec.OwnerReferences)
	}
}
