package sinks

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"unicode/utf8"
)

// LINE Messaging API limits and formats the sink checks, from the API
// reference.
const (
	lineMaxBody     = 2 << 20
	lineMaxMessages = 5
	lineMaxText     = 5000
	lineMaxAltText  = 1500
)

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

var lineTypes = map[string]bool{"text": true, "sticker": true, "image": true, "video": true, "audio": true,
	"location": true, "imagemap": true, "template": true, "flex": true}

// lineError is the Messaging API's error body.
type lineError struct {
	Message string       `json:"message"`
	Details []lineDetail `json:"details,omitempty"`
}

type lineDetail struct {
	Message  string `json:"message"`
	Property string `json:"property"`
}

// linePush serves POST /v2/bot/message/push.
func (h *HTTPSink) linePush(w http.ResponseWriter, r *http.Request) {
	e := h.Line
	f, faulty := e.begin(r)
	if faulty && !f.afterAccept {
		writeFault(w, f, lineError{Message: fmt.Sprintf("failure injected by the sink (%d)", f.status)})
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+h.lineToken {
		writeJSON(w, http.StatusUnauthorized, nil, lineError{Message: "Authentication failed. Confirm that the access token in the authorization header is valid."})
		return
	}
	key := r.Header.Get("X-Line-Retry-Key")
	if key != "" && !uuidRE.MatchString(key) {
		writeJSON(w, http.StatusBadRequest, nil, lineError{Message: "The value of the X-Line-Retry-Key header is invalid: it must be a UUID"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, lineMaxBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, nil, lineError{Message: "The request body is too large"})
		return
	}
	if details := checkLinePush(body); len(details) > 0 {
		writeJSON(w, http.StatusBadRequest, nil, lineError{Message: fmt.Sprintf("The request body has %d error(s)", len(details)), Details: details})
		return
	}
	id := newID()
	if accepted, dup := e.accept(stored(id, r, body), key); dup {
		w.Header().Set("X-Line-Request-Id", id)
		writeJSON(w, http.StatusConflict, http.Header{"X-Line-Accepted-Request-Id": {accepted}},
			lineError{Message: "The retry key is already accepted"})
		return
	}
	h.log.Info("line push received", "request_id", id)
	w.Header().Set("X-Line-Request-Id", id)
	if faulty {
		writeFault(w, f, lineError{Message: fmt.Sprintf("response lost on purpose by the sink (%d)", f.status)})
		return
	}
	writeJSON(w, http.StatusOK, nil, map[string]any{"sentMessages": []map[string]string{{"id": id}}})
}

// checkLinePush checks a push body's shape as the Messaging API does and
// returns its problems.
func checkLinePush(body []byte) []lineDetail {
	var p struct {
		To       *string           `json:"to"`
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return []lineDetail{{Message: "The request body is not valid JSON: " + err.Error(), Property: ""}}
	}
	var ds []lineDetail
	if p.To == nil || *p.To == "" {
		ds = append(ds, lineDetail{Message: "must be specified", Property: "to"})
	}
	if n := len(p.Messages); n == 0 || n > lineMaxMessages {
		ds = append(ds, lineDetail{Message: fmt.Sprintf("size must be between 1 and %d", lineMaxMessages), Property: "messages"})
	}
	for i, raw := range p.Messages {
		prop := fmt.Sprintf("messages[%d]", i)
		var m struct {
			Type     string          `json:"type"`
			Text     *string         `json:"text"`
			AltText  *string         `json:"altText"`
			Contents json.RawMessage `json:"contents"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			ds = append(ds, lineDetail{Message: "must be an object", Property: prop})
			continue
		}
		if !lineTypes[m.Type] {
			ds = append(ds, lineDetail{Message: "invalid message type", Property: prop + ".type"})
			continue
		}
		switch m.Type {
		case "text":
			if m.Text == nil || *m.Text == "" {
				ds = append(ds, lineDetail{Message: "must be specified", Property: prop + ".text"})
			} else if utf8.RuneCountInString(*m.Text) > lineMaxText {
				ds = append(ds, lineDetail{Message: fmt.Sprintf("length must be between 1 and %d", lineMaxText), Property: prop + ".text"})
			}
		case "flex":
			if m.AltText == nil || *m.AltText == "" {
				ds = append(ds, lineDetail{Message: "must be specified", Property: prop + ".altText"})
			} else if utf8.RuneCountInString(*m.AltText) > lineMaxAltText {
				ds = append(ds, lineDetail{Message: fmt.Sprintf("length must be between 1 and %d", lineMaxAltText), Property: prop + ".altText"})
			}
			var c struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(m.Contents, &c); err != nil || (c.Type != "bubble" && c.Type != "carousel") {
				ds = append(ds, lineDetail{Message: "must be a bubble or carousel container", Property: prop + ".contents"})
			}
		}
	}
	return ds
}
