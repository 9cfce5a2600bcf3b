// Package inbox keeps every member's in-app inbox: the in-app adapter
// appends messages to inapp.messages; this stage folds them into the
// compacted table inbox-table keyed by member (the newest messages, each
// delivery ID once), and Handler serves it over HTTP from a Goka view, to
// the member alone (Auth: a JWT issued by the shop).
package inbox

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/bytedance/sonic"
	"github.com/lovoo/goka"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group; its table is the inbox.
const Group = topics.GroupInbox

// Table is the inbox table topic.
var Table = goka.GroupTable(goka.Group(Group))

// maxMessages is how many messages an inbox keeps.
const maxMessages = 50

// Inbox is a member's in-app messages, newest first.
type Inbox struct {
	Messages []topics.InAppMessage `json:"messages"`
}

// Add adds m unless its delivery ID is already there (a redelivered send).
func (b *Inbox) Add(m topics.InAppMessage) bool {
	if slices.ContainsFunc(b.Messages, func(x topics.InAppMessage) bool { return x.DeliveryID == m.DeliveryID }) {
		return false
	}
	b.Messages = slices.Insert(b.Messages, 0, m)
	if len(b.Messages) > maxMessages {
		b.Messages = b.Messages[:maxMessages]
	}
	return true
}

// Codec is the inbox-table codec.
type Codec = stage.TableCodec[Inbox]

// Graph is the stage's topology. keys admits its input by placement
// only: an in-app message names no member (it is the app-readable payload),
// so its key cannot be checked against its content.
func Graph(keys stage.Keys) *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.InAppMessages), stage.Raw, func(ctx goka.Context, msg any) {
			if keys.Admit(ctx, msg, "") {
				add(ctx, msg)
			}
		}),
		goka.Persist(Codec{}),
		stage.DLQOutput(),
	)
}

// New returns the inbox processor.
func New(env stage.Env) (*goka.Processor, error) {
	return goka.NewProcessor(env.Brokers, Graph(stage.KeysOf(Group, env)), env.ProcessorOptions()...)
}

func add(ctx goka.Context, msg any) {
	raw, _ := msg.([]byte)
	var m topics.InAppMessage
	if err := sonic.Unmarshal(raw, &m); err != nil || m.DeliveryID == "" {
		if err == nil {
			err = errMissingDeliveryID
		}
		stage.DeadLetter(ctx, Group, msg, err)
		return
	}
	in, _ := ctx.Value().(*Inbox)
	if in == nil {
		in = &Inbox{}
	}
	if in.Add(m) {
		ctx.SetValue(in)
	}
}

type inboxError string

func (e inboxError) Error() string { return string(e) }

const errMissingDeliveryID = inboxError("in-app message without delivery_id")

// NewView returns a view of the inbox table for Handler.
func NewView(env stage.Env) (*goka.View, error) {
	return goka.NewView(env.Brokers, Table, Codec{}, env.ViewOptions()...)
}

// Reader is what Handler reads: a *goka.View of the inbox table.
type Reader interface {
	Recovered() bool
	Get(key string) (any, error)
}

// Handler serves GET /v1/inbox/{member_id}: the member's messages as JSON,
// only to a request with a member token (see Auth) issued for that member.
// Everything else — no token, a bad one, one for another member, existing
// or not — gets the same 401, so the API never tells whether a member
// exists; a member with no messages gets an empty list.
func Handler(v Reader, auth *Auth) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/inbox/{member}", func(w http.ResponseWriter, r *http.Request) {
		if m, err := auth.Member(r); err != nil || m != r.PathValue("member") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rtm-inbox"`)
			http.Error(w, "a valid member token for this inbox is required", http.StatusUnauthorized)
			return
		}
		if !v.Recovered() {
			http.Error(w, "inbox is loading", http.StatusServiceUnavailable)
			return
		}
		val, err := v.Get(r.PathValue("member"))
		if err != nil {
			http.Error(w, "reading the inbox failed", http.StatusInternalServerError)
			return
		}
		in, _ := val.(*Inbox)
		if in == nil {
			in = &Inbox{Messages: []topics.InAppMessage{}}
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "private, no-store")
		json.NewEncoder(w).Encode(in)
	})
	return mux
}
