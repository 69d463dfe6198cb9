package export

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/gitops/seal"
)

// KeyField is the data key of the HMAC key in its Secret; a Secret with one key of another name
// works too.
const KeyField = "key"

// LoadKey reads the HMAC key of the change digests from Secret namespace/name. Both agents of a
// pair must use the same key (the secrets-in-sync check compares digests).
func LoadKey(ctx context.Context, cs kubernetes.Interface, namespace, name string) ([]byte, error) {
	s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the HMAC key secret %s/%s: %w", namespace, name, err)
	}
	key, ok := s.Data[KeyField]
	if !ok && len(s.Data) == 1 {
		for _, v := range s.Data {
			key, ok = v, true
		}
	}
	if !ok {
		keys := slices.Sorted(maps.Keys(s.Data))
		return nil, fmt.Errorf("HMAC key secret %s/%s: no %q key (it has %s)", namespace, name, KeyField, strings.Join(keys, ", "))
	}
	if len(key) < seal.MinKeyLen {
		return nil, fmt.Errorf("HMAC key secret %s/%s: %w (it has %d); make one with `openssl rand -base64 48`", namespace, name, seal.ErrShortKey, len(key))
	}
	return key, nil
}
