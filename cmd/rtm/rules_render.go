package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/connectors/tracking"
	"github.com/rtm-project/rtm/internal/explain"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/rules"
)

func newRulesRenderCmd() *cobra.Command {
	var memberID, campaign, channel string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "render --member M --campaign C [--channel X] [FILE.xlsx...]",
		Short: "Render a campaign's message for a real member, exactly as the render stage would",
		Long: `Renders the message of campaign C for member M from M's current profile (member-state's
table) and the event of M's latest offer of C within --since, with the rules in force — or with the
given workbooks, to try a template before publishing. --channel picks the variant (default: the
channel the offer was routed to, else the first the template has). Links are sealed with the
tracking secret when it is set, else with a throwaway key. Nothing is written or sent.`,
		RunE: func(cmd *cobra.Command, files []string) error {
			return withKafka(cmd, time.Minute, nil, func(ctx context.Context, cfg config.Config, cl *kgo.Client) error {
				keys, err := cfg.TrackingKeys()
				if err != nil {
					throwaway := make([]byte, 32)
					rand.Read(throwaway)
					if keys, err = tracking.NewKeyring(throwaway); err != nil {
						return err
					}
					fmt.Fprintln(cmd.ErrOrStderr(), "no tracking secret set: links are sealed with a throwaway key")
				}
				r, err := render.NewRenderer(render.Config{TrackingBase: cfg.TrackingBase, Keys: keys, TrackingTTL: cfg.TrackingTTL,
					MailFrom: cfg.Channels.MailFrom, UnsubscribeMailto: cfg.Channels.UnsubscribeMailto})
				if err != nil {
					return err
				}
				set, err := renderRules(ctx, cl, files)
				if err != nil {
					return err
				}
				p, err := explain.Profile(ctx, cl, cfg.Partitions, memberID)
				if err != nil {
					return err
				}
				if p == nil || !p.Exists {
					return fmt.Errorf("member %s has no profile in member-state's table", memberID)
				}
				rep, err := explain.Member(ctx, cl, cfg.Partitions, memberID, time.Now().Add(-since))
				if err != nil {
					return err
				}
				var offer *explain.Offer
				for i := range rep.Offers {
					if rep.Offers[i].CampaignID == campaign && rep.Offers[i].Last != nil {
						offer = &rep.Offers[i] // oldest first: the last one wins
					}
				}
				if offer == nil {
					return fmt.Errorf("no offer of campaign %s for %s in the last %v: its event is what the message is about (try a longer --since)", campaign, memberID, since)
				}
				o := *offer.Last
				now := time.Now()
				o.Member = p.Snapshot(now)
				if o.Channel = cmp.Or(channel, o.Channel); o.Channel == "" {
					cs := set.TemplateChannels(o.Template)
					if len(cs) == 0 {
						return fmt.Errorf("no template %q in the rules", o.Template)
					}
					o.Channel = cs[0]
				}
				d, err := r.Render(set, &o, now)
				if err != nil {
					return err
				}
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, d.Payload, "", "  "); err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "campaign %s, template %s, %s to %s (offer %s, event %s), as of %s\n",
					o.CampaignID, o.Template, o.Channel, memberID, o.OfferID, o.Event.EventID, now.UTC().Format(time.RFC3339))
				fmt.Fprintf(out, "delivery %s\n%s\n", d.DeliveryID, pretty.String())
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&memberID, "member", "", "member ID")
	cmd.Flags().StringVar(&campaign, "campaign", "", "campaign ID")
	cmd.Flags().StringVar(&channel, "channel", "", "channel variant: MAIL, LINE, PUSH or INAPP")
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back to look for the member's offer of the campaign")
	cmd.MarkFlagRequired("member")
	cmd.MarkFlagRequired("campaign")
	return cmd
}

// renderRules is the rule set a test render uses: the workbooks given, or
// the tables in force.
func renderRules(ctx context.Context, cl *kgo.Client, files []string) (*rules.Set, error) {
	if len(files) > 0 {
		specs, err := loadWorkbooks(files)
		if err != nil {
			return nil, err
		}
		return rules.CompileSet(specs)
	}
	live, err := rules.List(ctx, cl)
	if err != nil {
		return nil, err
	}
	if len(live) == 0 {
		return nil, fmt.Errorf("no rules in force (publish some, or pass workbooks)")
	}
	return rules.CompileSet(slices.Collect(maps.Values(live)))
}
