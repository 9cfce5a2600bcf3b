package channels

import (
	"net/http"
	"time"
)

// Test hooks into unexported parts.

func HTTPError(status int, h http.Header, body []byte) error {
	return httpError(status, h, body, time.Now())
}

var RetryAfter = retryAfter
