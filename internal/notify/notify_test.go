package notify_test

import (
	"testing"

	"github.com/mpha-dev/mpha/internal/notify"
)

func TestBroadcast(t *testing.T) {
	var a, b notify.Broadcast
	one, stopOne := a.Subscribe()
	merged, stopMerged := notify.Merge(&a, &b)
	defer stopMerged()

	a.Notify()
	a.Notify() // a second change before the first is taken: one wake-up, no block
	<-one
	select {
	case <-one:
		t.Error("two wake-ups for changes made before the first was taken")
	default:
	}
	<-merged
	b.Notify()
	<-merged

	stopOne()
	a.Notify()
	select {
	case <-one:
		t.Error("woken after the subscription ended")
	default:
	}
	<-merged
	stopMerged()
	stopMerged() // ending twice is harmless
}
