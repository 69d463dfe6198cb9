package database_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// The embedded topology's freshness on a real API server, read as the agent with the chart's
// one rule for it (get on the named CronJob): a missing CronJob and one that never succeeded
// fail the check with evidence; its last successful run passes within maxImportAge and fails
// past it.
func TestRestoreJobOnTheAPIServer(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := testrig.StartCluster(t, "west")
	admin := c.Clientset
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tsb"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "mpha-agent", Namespace: "tsb"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"batch"}, Resources: []string{"cronjobs"}, ResourceNames: []string{"tsb-restore"}, Verbs: []string{"get"}}}}
	if _, err := admin.RbacV1().Roles("tsb").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "mpha-agent", Namespace: "tsb"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "mpha-agent"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "mpha-agent"}}}
	if _, err := admin.RbacV1().RoleBindings("tsb").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "mpha-agent"}
	agent, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now().Truncate(time.Second)
	opts := database.CheckOptions{Topology: database.Embedded, MaxImportAge: time.Hour, Now: func() time.Time { return now },
		LastRestore: database.RestoreJob(agent, "tsb", "tsb-restore")}
	// Until the RBAC is in force and the CronJob exists, the read fails: the check fails with it.
	testrig.Eventually(t, "the check to see no CronJob", 30*time.Second, func(ctx context.Context) error {
		ch := database.Check(ctx, opts)
		if ch.Result != "fail" || !strings.Contains(ch.Evidence, "reading CronJob tsb/tsb-restore") || !strings.Contains(ch.Evidence, "not found") {
			return fmt.Errorf("%s: %s", ch.Result, ch.Evidence)
		}
		return nil
	})

	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "tsb-restore", Namespace: "tsb"},
		Spec: batchv1.CronJobSpec{Schedule: "*/15 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "restore", Image: "tetrate/tsb-restore:fixture"}}}}}}}}
	if cj, err = admin.BatchV1().CronJobs("tsb").Create(ctx, cj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ch := database.Check(ctx, opts); ch.Result != "fail" || !strings.Contains(ch.Evidence, "never succeeded") {
		t.Errorf("a CronJob that never succeeded: %+v", ch)
	}

	ran := metav1.NewTime(now.Add(-20 * time.Minute))
	cj.Status.LastSuccessfulTime, cj.Status.LastScheduleTime = &ran, &ran
	if _, err := admin.BatchV1().CronJobs("tsb").UpdateStatus(ctx, cj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	at, err := database.RestoreJob(agent, "tsb", "tsb-restore")(ctx)
	if err != nil || !at.Equal(ran.Time) {
		t.Errorf("RestoreJob = %s, %v; want %s", at, err, ran.Time)
	}
	if ch := database.Check(ctx, opts); ch.Result != "pass" || !strings.Contains(ch.Evidence, "the last successful tsb-restore run was 20m0s ago") {
		t.Errorf("a run 20 minutes ago: %+v", ch)
	}
	now = now.Add(time.Hour)
	if ch := database.Check(ctx, opts); ch.Result != "fail" || !strings.Contains(ch.Evidence, "restore older than the RPO") {
		t.Errorf("the same run 80 minutes later: %+v", ch)
	}
	// The agent may read no other CronJob: the chart's rule names this one.
	if _, err := database.RestoreJob(agent, "tsb", "other")(ctx); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("reading another CronJob: %v", err)
	}
}
