package topics

import (
	"crypto/sha256"
	"encoding/hex"
)

// Deterministic IDs (DESIGN.md, idea 4): derived from their inputs only, so a
// replay or a retry produces the same ID and the frequency ledger and the
// send stage can deduplicate on it.

func hashID(prefix string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return prefix + hex.EncodeToString(h.Sum(nil)[:12])
}

// OfferID is the ID of campaign's offer to member for event.
func OfferID(campaign, eventID, member string) string {
	return hashID("of-", campaign, eventID, member)
}

// RequestID is the ID of campaign's audience request for event.
func RequestID(campaign, eventID string) string { return hashID("ar-", campaign, eventID) }

// DeliveryID is the ID of an offer's delivery on a channel.
func DeliveryID(offerID, channel string) string { return hashID("dl-", offerID, channel) }
