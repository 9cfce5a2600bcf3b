package channels

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// maxErrorBody is how much of an error response is kept in the error.
const maxErrorBody = 1024

// response is what the HTTP adapters need of an answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// postJSON POSTs body to url with headers. A transport failure (refused
// connection, timeout) is retryable; a cancelled ctx is returned as is,
// so Deliverer can tell shutdown from failure.
func postJSON(ctx context.Context, c *http.Client, url string, headers map[string]string, body []byte) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, permanent(0, "building request to %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &RetryableError{Err: fmt.Errorf("posting to %s: %w", url, err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil && !errors.Is(err, io.EOF) && resp.StatusCode/100 != 2 {
		return nil, &RetryableError{Code: resp.StatusCode, Err: fmt.Errorf("reading response from %s: %w", url, err)}
	}
	_, _ = io.Copy(io.Discard, resp.Body) // drain so the connection is reused
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// DefaultMaxConnections is the HTTP adapters' connection pool size when
// none is set: the default partition count, since the send stage runs
// one delivery at a time per partition it owns.
const DefaultMaxConnections = 16

// httpClient returns the client an HTTP adapter uses: one per adapter,
// with its own transport sized for the send stage's concurrency. Go's
// default transport keeps 2 idle connections per host, so with more
// partitions than that every burst opened (and TLS-handshook) new
// connections and closed them again.
func httpClient(timeout time.Duration, conns int) *http.Client {
	return &http.Client{Timeout: timeout, Transport: newTransport(timeout, conns)}
}

// newTransport keeps up to conns idle connections to the API host (all
// an adapter talks to), and bounds every phase of a request so a stuck
// API costs one timeout, not a hung partition.
func newTransport(timeout time.Duration, conns int) *http.Transport {
	if conns <= 0 {
		conns = DefaultMaxConnections
	}
	dialer := &net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(timeout, 10*time.Second),
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
	}
}
