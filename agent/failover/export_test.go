package failover

// SetHook makes h call hook at the named points of handling a request ("decoded", "pushed",
// "pr-opened", "answered"), so tests can stop the agent there.
func SetHook(h *Handler, hook func(point string)) { h.hook = hook }

var (
	StatusID   = statusID
	RetryDelay = retryDelay
)
