package channels

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// PermanentError is a failure that retrying cannot fix: a malformed
// payload, a request the channel rejected (HTTP 4xx other than 408, 409 and
// 429; SMTP 5xx), a delivery for another channel. Deliverer never retries it.
type PermanentError struct {
	// Code is the HTTP status or SMTP reply code, 0 when there was none.
	Code int
	Err  error
}

func (e *PermanentError) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("permanent failure (%d): %v", e.Code, e.Err)
	}
	return fmt.Sprintf("permanent failure: %v", e.Err)
}

func (e *PermanentError) Unwrap() error { return e.Err }

// RetryableError is a failure that may pass later: rate limited (429),
// server errors (5xx), 408 and 409, timeouts, SMTP 4xx, retriable Kafka
// errors. RetryAfter is the channel's own hint (Retry-After), zero when it
// gave none; Deliverer waits at least that long before the next attempt.
type RetryableError struct {
	Code       int
	RetryAfter time.Duration
	Err        error
}

func (e *RetryableError) Error() string {
	var b strings.Builder
	b.WriteString("retryable failure")
	if e.Code != 0 {
		fmt.Fprintf(&b, " (%d)", e.Code)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %v)", e.RetryAfter)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *RetryableError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is or wraps a *PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

func permanent(code int, format string, args ...any) error {
	return &PermanentError{Code: code, Err: fmt.Errorf(format, args...)}
}

// httpError classifies a non-2xx HTTP response. body is a prefix of the
// response body, kept in the error because LINE and FCM explain rejections
// there.
func httpError(status int, h http.Header, body []byte, now time.Time) error {
	err := fmt.Errorf("http %d: %s", status, strings.TrimSpace(string(body)))
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusConflict,
		status == http.StatusTooManyRequests, status >= 500:
		return &RetryableError{Code: status, RetryAfter: retryAfter(h.Get("Retry-After"), now), Err: err}
	default:
		return &PermanentError{Code: status, Err: err}
	}
}

// retryAfter parses a Retry-After value: delay-seconds or an HTTP-date
// (RFC 9110 10.2.3). Unparseable or past values give zero.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
