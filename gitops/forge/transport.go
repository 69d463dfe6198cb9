package forge

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/fluxcd/go-git-providers/gitprovider"
)

// transportOption puts Options.HTTPClient's transport at the end of go-git-providers' chain
// (after its authentication), each request bounded by the client's timeout.
func (o Options) transportOption() gitprovider.ClientOption {
	base, timeout := http.DefaultTransport, DefaultTimeout
	if o.HTTPClient != nil {
		if o.HTTPClient.Transport != nil {
			base = o.HTTPClient.Transport
		}
		if o.HTTPClient.Timeout > 0 {
			timeout = o.HTTPClient.Timeout
		}
	}
	return gitprovider.WithPostChainTransportHook(func(http.RoundTripper) http.RoundTripper {
		return &timeoutTransport{base: base, timeout: timeout}
	})
}

// timeoutTransport ends each request after timeout, reading the body included, like
// http.Client.Timeout (which go-git-providers' own *http.Client does not set).
type timeoutTransport struct {
	base    http.RoundTripper
	timeout time.Duration
}

func (t *timeoutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelBody releases the request's timer when the SDK closes the body.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
