// Package notify wakes the goroutines waiting on something that changed (a Kustomization's
// applied revision, a heartbeat's arrival) without making any of them wait for the others.
package notify

import "sync"

// Broadcast hands each subscriber a channel that receives a value when Notify is called; a
// subscriber that has not taken the last one misses nothing, it simply sees one wake-up for
// several changes. The zero value is ready to use.
type Broadcast struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// Subscribe returns the channel to wait on and the function that ends the subscription.
func (b *Broadcast) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[chan struct{}]struct{}{}
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}

// Notify wakes every subscriber; it never blocks.
func (b *Broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Merge subscribes to each of bs and returns one channel that receives when any of them
// notifies, and the function that ends all the subscriptions (and the goroutine forwarding them).
func Merge(bs ...*Broadcast) (<-chan struct{}, func()) {
	out := make(chan struct{}, 1)
	done := make(chan struct{})
	var stops []func()
	var wg sync.WaitGroup
	for _, b := range bs {
		ch, stop := b.Subscribe()
		stops = append(stops, stop)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case <-ch:
					select {
					case out <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	var once sync.Once
	return out, func() {
		once.Do(func() {
			for _, s := range stops {
				s()
			}
			close(done)
			wg.Wait()
		})
	}
}
