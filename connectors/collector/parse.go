package collector

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rtm-project/rtm/topics"
)

// EventTypes are the event types POST /v1/events accepts.
var EventTypes = []string{"page_view", "add_to_cart", "remove_from_cart", "search", "app_open", "purchase"}

// TrackedTypes change a member's consent (unsubscribe) or train channel
// and timing choice (open, click), so an API key is not enough to send
// them: they are recorded only from sealed tracking links (/t/o, /t/c,
// /t/u), which only the member received, or come from the shop's database
// through CDC. POST /v1/events refuses them with errTracked.
var TrackedTypes = []string{"open", "click", "unsubscribe"}

const errTracked = "is not accepted by POST /v1/events: opens, clicks and unsubscribes change consent or train the models, " +
	"so they are recorded only from the signed tracking links in messages (/t/o, /t/c, /t/u) or from the shop's database"

// needsItem are the types that make no sense without an item: detection
// would drop them later, so they are rejected here, where the sender still
// learns why.
var needsItem = []string{"add_to_cart", "remove_from_cart", "purchase"}

const (
	maxIDLen      = 128
	maxAttrs      = 32
	maxAttrLen    = 1024
	maxFutureSkew = 24 * time.Hour
)

// ErrEmptyBody is returned by ParseEvents for a body with no events.
var ErrEmptyBody = errors.New("empty body: send a JSON array or NDJSON of events")

// Reject says why one event of a request was not accepted. Index is the
// event's 0-based position in the request; Line is its 1-based line for
// NDJSON bodies (0 for JSON arrays).
type Reject struct {
	Index int    `json:"index"`
	Line  int    `json:"line,omitempty"`
	Error string `json:"error"`
}

// wireEvent is an event as apps send it. At is parsed by hand for a
// precise error; unknown fields are ignored so apps can add context.
type wireEvent struct {
	EventID    string            `json:"event_id"`
	MemberID   string            `json:"member_id"`
	Type       string            `json:"type"`
	ItemID     string            `json:"item_id"`
	DeliveryID string            `json:"delivery_id"`
	At         string            `json:"at"`
	Attrs      map[string]string `json:"attrs"`
}

// ParseEvents parses a JSON array or NDJSON body into events. Bad events
// are reported in rejects, one per event, with a precise reason; good ones
// are returned. err is set only when the body as a whole is unusable (empty,
// or a JSON array that does not parse). now fills in a missing "at" and
// bounds future timestamps. It never panics on any input.
func ParseEvents(body []byte, now time.Time) (events []topics.BehaviorEvent, rejects []Reject, err error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, nil, ErrEmptyBody
	}
	add := func(i, line int, raw []byte) {
		ev, err := parseOne(raw, now)
		if err != nil {
			rejects = append(rejects, Reject{Index: i, Line: line, Error: err.Error()})
			return
		}
		events = append(events, ev)
	}
	if trimmed[0] == '[' {
		if !utf8.Valid(trimmed) {
			return nil, nil, fmt.Errorf("body: invalid UTF-8 at byte %d", invalidAt(trimmed))
		}
		var raws []json.RawMessage
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, nil, fmt.Errorf("body: %s", jsonReason(err))
		}
		if len(raws) == 0 {
			return nil, nil, ErrEmptyBody
		}
		for i, raw := range raws {
			add(i, 0, raw)
		}
		return events, rejects, nil
	}
	i := 0
	for n, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		add(i, n+1, line)
		i++
	}
	return events, rejects, nil
}

// Count returns how many events a body holds without validating them, so
// an oversized request can be refused before any work.
func Count(body []byte) int {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var raws []json.RawMessage
		if json.Unmarshal(trimmed, &raws) == nil {
			return len(raws)
		}
		return 0
	}
	n := 0
	for line := range bytes.SplitSeq(trimmed, []byte("\n")) {
		if len(bytes.TrimSpace(line)) > 0 {
			n++
		}
	}
	return n
}

func parseOne(raw []byte, now time.Time) (topics.BehaviorEvent, error) {
	if !utf8.Valid(raw) {
		return topics.BehaviorEvent{}, fmt.Errorf("invalid UTF-8 at byte %d", invalidAt(raw))
	}
	if len(raw) == 0 || raw[0] != '{' {
		return topics.BehaviorEvent{}, fmt.Errorf("event must be a JSON object, got %s", jsonKind(raw))
	}
	var w wireEvent
	if err := json.Unmarshal(raw, &w); err != nil {
		return topics.BehaviorEvent{}, errors.New(jsonReason(err))
	}
	var errs []string
	check := func(field, v string, required bool) {
		switch {
		case v == "" && required:
			errs = append(errs, "missing "+field)
		case len(v) > maxIDLen:
			errs = append(errs, fmt.Sprintf("%s is %d bytes, at most %d", field, len(v), maxIDLen))
		case strings.ContainsFunc(v, isControl):
			errs = append(errs, field+" contains control characters")
		}
	}
	check("event_id", w.EventID, false)
	check("member_id", w.MemberID, true)
	check("item_id", w.ItemID, slices.Contains(needsItem, w.Type))
	check("delivery_id", w.DeliveryID, false)
	switch {
	case w.Type == "":
		errs = append(errs, "missing type")
	case slices.Contains(TrackedTypes, w.Type):
		errs = append(errs, fmt.Sprintf("type %q %s", w.Type, errTracked))
	case !slices.Contains(EventTypes, w.Type):
		errs = append(errs, fmt.Sprintf("unknown type %q (want one of %s)", truncate(w.Type), strings.Join(EventTypes, ", ")))
	}
	at := now.UTC()
	if w.At != "" {
		t, err := time.Parse(time.RFC3339Nano, w.At)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("at %q is not an RFC 3339 time like 2026-11-23T10:00:00Z", truncate(w.At)))
		case t.After(now.Add(maxFutureSkew)):
			errs = append(errs, fmt.Sprintf("at %s is more than %v in the future", w.At, maxFutureSkew))
		default:
			at = t.UTC()
		}
	}
	if len(w.Attrs) > maxAttrs {
		errs = append(errs, fmt.Sprintf("attrs has %d entries, at most %d", len(w.Attrs), maxAttrs))
	}
	for _, k := range slices.Sorted(maps.Keys(w.Attrs)) {
		if len(k)+len(w.Attrs[k]) > maxAttrLen {
			errs = append(errs, fmt.Sprintf("attrs[%q] is longer than %d bytes", truncate(k), maxAttrLen))
		}
	}
	if len(errs) > 0 {
		return topics.BehaviorEvent{}, errors.New(strings.Join(errs, "; "))
	}
	ev := topics.BehaviorEvent{Envelope: topics.Envelope{SchemaVersion: topics.SchemaVersion},
		EventID: w.EventID, MemberID: w.MemberID, Type: w.Type, ItemID: w.ItemID,
		DeliveryID: w.DeliveryID, At: at, Attrs: w.Attrs}
	if ev.EventID == "" {
		ev.EventID = derivedID(raw)
	}
	return ev, nil
}

// derivedID names an event that came without an event_id by its content,
// so a client retrying the same request produces the same ID.
func derivedID(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "c-" + hex.EncodeToString(sum[:16])
}

// jsonReason turns encoding/json errors into messages that name the field.
func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "value"
		}
		if field == "attrs" && te.Type.String() == "string" {
			return fmt.Sprintf("attrs: values must be strings, got %s", te.Value)
		}
		return fmt.Sprintf("%s: want %s, got %s", field, goToJSON(te.Type.String()), te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	default:
		return strings.TrimPrefix(err.Error(), "json: ")
	}
}

func goToJSON(t string) string {
	switch t {
	case "string":
		return "string"
	case "map[string]string":
		return "object of strings"
	default:
		return t
	}
}

func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		if raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9' {
			return "number"
		}
		return fmt.Sprintf("%q", truncate(string(raw)))
	}
}

func invalidAt(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func truncate(s string) string {
	if len(s) <= 40 {
		return s
	}
	return strings.ToValidUTF8(s[:40], "") + "..."
}
