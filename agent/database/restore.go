package database

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RestoreJob reports when the embedded topology's restore CronJob (tsb-restore: it loads the
// active's latest backup into this site's kubegres) last succeeded.
func RestoreJob(cs kubernetes.Interface, namespace, name string) func(ctx context.Context) (time.Time, error) {
	return func(ctx context.Context) (time.Time, error) {
		cj, err := cs.BatchV1().CronJobs(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return time.Time{}, fmt.Errorf("reading CronJob %s/%s: %w", namespace, name, err)
		}
		if cj.Status.LastSuccessfulTime == nil {
			return time.Time{}, fmt.Errorf("CronJob %s/%s never succeeded", namespace, name)
		}
		return cj.Status.LastSuccessfulTime.Time, nil
	}
}
