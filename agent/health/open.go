package health

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
)

// Published is a failover suggestion as the pair's stream holds it.
type Published struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
	Suggestion
}

// maxSuggestionsRead bounds how many suggestions Open reads (the stream keeps 30 days of them).
const maxSuggestionsRead = 1000

// Open reads the pair's failover suggestions that still stand: published after since (the last
// failover) and made at epoch, the pair's epoch now, or at no known epoch; oldest first. A
// failover moves the epoch on, which closes the suggestions made before it. A message on the
// subject that is not a suggestion is skipped.
func Open(ctx context.Context, js jetstream.JetStream, s event.Subjects, epoch int64, since time.Time) ([]Published, error) {
	st, err := js.Stream(ctx, s.Stream())
	if err != nil {
		return nil, fmt.Errorf("suggestions: stream %s: %w", s.Stream(), err)
	}
	subject := SuggestedSubject(s)
	var out []Published
	// "Next by subject" from one sequence to the next: suggestions are few among heartbeats.
	for seq, n := uint64(1), 0; n < maxSuggestionsRead; n++ {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("suggestions on %s: %w", subject, err)
		}
		seq = m.Sequence + 1
		if !m.Time.After(since) {
			continue
		}
		e, sg, err := DecodeSuggestion(m.Data)
		if err != nil || (sg.Epoch != nil && *sg.Epoch != epoch) {
			continue
		}
		out = append(out, Published{ID: e.ID(), At: m.Time.UTC(), Suggestion: sg})
	}
	return out, nil
}
