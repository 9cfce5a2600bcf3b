package topics

// Topic names. These are the contract between stages and with the outside
// world (kcat, Kafka Connect, Java producers): change them only with a
// migration plan.
const (
	CDCMembers   = "cdc.members"
	CDCItems     = "cdc.items"
	CDCFavorites = "cdc.favorites"
	CDCOrders    = "cdc.orders"
	CDCCartItems = "cdc.cart_items"
	// CDCCheckpoints holds the Change Tracking bridge's per-table version,
	// written in the same transaction as the rows it covers.
	CDCCheckpoints = "cdc.checkpoints"
	// CDCKeys is the Change Tracking bridge's set of primary keys it has
	// published as live (compacted, a tombstone once deleted), written in the
	// same transaction as the rows: the sweep at the end of a resync sends
	// deletes for keys the resync did not see.
	CDCKeys = "cdc.keys"

	BehaviorEvents = "behavior.events"
	Events         = "events"
	// EventsUnmatched records, once per event, that no campaign matched
	// it, keyed as the event is (member_id or item_id): what explain
	// shows for an event that concerned a member but fired nothing.
	EventsUnmatched  = "events.unmatched"
	AudienceRequests = "audience.requests"
	OffersCandidates = "offers.candidates"
	OffersFiltered   = "offers.filtered"
	// OffersExcluded records every offer a stage dropped, with the deciding
	// rule and reason, so "why did this member get nothing" has an answer.
	OffersExcluded  = "offers.excluded"
	OffersRouted    = "offers.routed"
	OffersReady     = "offers.ready"
	Deliveries      = "deliveries"
	DeliveryResults = "delivery.results"
	// Conversions holds orders attributed to a member's recent sent or
	// held_out deliveries (Conversion), written by member-state.
	Conversions = "campaign.conversions"
	// MemberConsent is compacted and keyed by member: what each member may
	// be sent now (Consent), written by member-state when it changes and
	// joined by the send stage, so a consent withdrawn after an offer was
	// filtered still stops its delivery.
	MemberConsent = "member-consent"
	// InAppMessages carries in-app messages to the inbox stage.
	InAppMessages = "inapp.messages"

	// Rules is compacted and keyed by rule-table name: the latest published
	// version of every table. RulesHistory keeps every published version
	// (delete policy, long retention) so any version can be restored.
	Rules        = "rules"
	RulesHistory = "rules.history"

	DLQ = "dlq"
)
