package channels

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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

// httpClient returns the client an HTTP adapter uses: one per adapter,
// keep-alive connections, the given per-request timeout.
func httpClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout}
}
