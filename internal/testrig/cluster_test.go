package testrig_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// Two clusters are independent API servers: an informer on one sees a Secret created there, and
// the other never has it. The kubeconfig file works as kubectl's would.
func TestClustersWatchSecrets(t *testing.T) {
	integration(t)
	t.Parallel()
	cs := testrig.StartClusters(t, "east", "west")
	east, west := cs[0], cs[1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cfg, err := clientcmd.BuildConfigFromFlags("", east.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	viaFile, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := viaFile.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tsb"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a namespace through the kubeconfig: %v", err)
	}

	seen := make(chan *corev1.Secret, 1)
	f := informers.NewSharedInformerFactoryWithOptions(east.Clientset, 0, informers.WithNamespace("tsb"),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", "iam-signing-key").String()
		}))
	inf := f.Core().V1().Secrets().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(o any) { seen <- o.(*corev1.Secret) }}); err != nil {
		t.Fatal(err)
	}
	watchCtx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	f.Start(watchCtx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(watchCtx.Done(), inf.HasSynced) {
		t.Fatal("informer cache never synced")
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "iam-signing-key", Namespace: "tsb"}, Data: map[string][]byte{"private.key": []byte("k")}}
	if _, err := east.Clientset.CoreV1().Secrets("tsb").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-seen:
		if string(got.Data["private.key"]) != "k" {
			t.Errorf("watched secret data = %q, want %q", got.Data["private.key"], "k")
		}
	case <-ctx.Done():
		t.Fatal("the informer never saw the secret")
	}
	if _, err := west.Clientset.CoreV1().Namespaces().Get(ctx, "tsb", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("west sees east's namespace: err = %v, want NotFound", err)
	}

	// An API server outage keeps the data: it is in etcd.
	cancelWatch()
	f.Shutdown()
	east.Stop(t)
	if _, err := east.Clientset.CoreV1().Secrets("tsb").Get(ctx, "iam-signing-key", metav1.GetOptions{}); err == nil {
		t.Fatal("the stopped API server still answers")
	}
	east.Restart(t)
	if _, err := east.Clientset.CoreV1().Secrets("tsb").Get(ctx, "iam-signing-key", metav1.GetOptions{}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
