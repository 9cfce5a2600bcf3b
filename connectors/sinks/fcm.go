package sinks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

const fcmMaxBody = 1 << 20

// fcmError is Google's API error body.
type fcmError struct {
	Error fcmStatus `json:"error"`
}

type fcmStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
}

func fcmErr(code int, status, msg string) fcmError {
	return fcmError{Error: fcmStatus{Code: code, Message: msg, Status: status}}
}

// fcmSend serves POST /v1/projects/{project}/messages:send.
func (h *HTTPSink) fcmSend(w http.ResponseWriter, r *http.Request) {
	e := h.Push
	f, faulty := e.begin(r)
	if faulty && !f.afterAccept {
		writeFault(w, f, fcmErr(f.status, statusName(f.status), "failure injected by the sink"))
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+h.fcmToken {
		writeJSON(w, http.StatusUnauthorized, nil, fcmErr(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."))
		return
	}
	project := r.PathValue("project")
	if project != h.fcmProject {
		writeJSON(w, http.StatusNotFound, nil, fcmErr(404, "NOT_FOUND", fmt.Sprintf("Project %q not found (the sink serves %q).", project, h.fcmProject)))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, fcmMaxBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, nil, fcmErr(413, "INVALID_ARGUMENT", "Request payload is too large."))
		return
	}
	if problems := checkFCMSend(body); len(problems) > 0 {
		writeJSON(w, http.StatusBadRequest, nil, fcmErr(400, "INVALID_ARGUMENT", strings.Join(problems, "; ")))
		return
	}
	id := newID()
	e.accept(stored(id, r, body), "")
	h.log.Info("push received", "request_id", id)
	if faulty {
		writeFault(w, f, fcmErr(f.status, statusName(f.status), "response lost on purpose by the sink"))
		return
	}
	writeJSON(w, http.StatusOK, nil, map[string]string{"name": "projects/" + project + "/messages/" + id})
}

var fcmMessageFields = map[string]bool{"name": true, "data": true, "notification": true, "android": true,
	"webpush": true, "apns": true, "fcm_options": true, "token": true, "topic": true, "condition": true}

// checkFCMSend checks a send body's shape as FCM does: a message with
// exactly one target, known fields only, string data values.
func checkFCMSend(body []byte) []string {
	var req struct {
		ValidateOnly bool                       `json:"validate_only"`
		Message      map[string]json.RawMessage `json:"message"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return []string{"Invalid JSON payload received: " + err.Error()}
	}
	if req.Message == nil {
		return []string{"message is required"}
	}
	var ps []string
	for k := range req.Message {
		if !fcmMessageFields[k] {
			ps = append(ps, fmt.Sprintf("Invalid JSON payload received. Unknown name %q at 'message'", k))
		}
	}
	targets := 0
	for _, t := range []string{"token", "topic", "condition"} {
		if raw, ok := req.Message[t]; ok {
			var s string
			if json.Unmarshal(raw, &s) != nil || s == "" {
				ps = append(ps, fmt.Sprintf("message.%s must be a non-empty string", t))
			}
			targets++
		}
	}
	if targets != 1 {
		ps = append(ps, "message must have exactly one of token, topic, condition")
	}
	if raw, ok := req.Message["data"]; ok {
		var data map[string]string
		if json.Unmarshal(raw, &data) != nil {
			ps = append(ps, "message.data values must be strings")
		}
	}
	if raw, ok := req.Message["notification"]; ok {
		var n struct {
			Title string `json:"title"`
			Body  string `json:"body"`
			Image string `json:"image"`
		}
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if d.Decode(&n) != nil {
			ps = append(ps, "message.notification must be an object of title, body, image strings")
		}
	}
	if raw, ok := req.Message["android"]; ok {
		var a map[string]json.RawMessage
		if json.Unmarshal(raw, &a) != nil {
			ps = append(ps, "message.android must be an object")
		}
	}
	return ps
}

func statusName(code int) string {
	switch {
	case code == http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case code == http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case code >= 500:
		return "INTERNAL"
	case code == http.StatusNotFound:
		return "NOT_FOUND"
	default:
		return "INVALID_ARGUMENT"
	}
}
