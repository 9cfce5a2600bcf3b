package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// printTable prints one row per storage and, when LevelDB was measured,
// each value relative to LevelDB's.
func printTable(w io.Writer, rs []result, cfg config) error {
	var base *result
	for i := range rs {
		if rs[i].Storage == "leveldb" {
			base = &rs[i]
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "storage\trecovery\trecords/s\tRSS recovery\tRSS with Gets\tGet p50\tGet p99\tfound\t\n")
	for _, r := range rs {
		rate := float64(r.Records) / r.Recovery.Seconds()
		fmt.Fprintf(tw, "%s\t%s\t%.0fk\t%.0f MiB\t%.0f MiB\t%s\t%s\t%d/%d\t\n", r.Storage, r.Recovery.Round(time.Millisecond),
			rate/1000, float64(r.RecoveryRSS)/(1<<20), float64(r.PeakRSS)/(1<<20), r.GetP50, r.GetP99, r.GetsFound, cfg.Gets)
	}
	if base != nil {
		fmt.Fprintf(tw, "\t\t\t\t\t\t\t\t\n")
		fmt.Fprintf(tw, "vs leveldb\t\trate\tRSS recovery\tRSS with Gets\tGet p50\tGet p99\t\t\n")
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t\t%.2fx\t%.2fx\t%.2fx\t%.2fx\t%.2fx\t\t\n", r.Storage,
				base.Recovery.Seconds()/r.Recovery.Seconds(),
				float64(r.RecoveryRSS)/float64(base.RecoveryRSS),
				float64(r.PeakRSS)/float64(base.PeakRSS),
				float64(r.GetP50)/float64(base.GetP50), float64(r.GetP99)/float64(base.GetP99))
		}
	}
	fmt.Fprintf(tw, "\t\t\t\t\t\t\t\t\n")
	fmt.Fprintf(tw, "at peak RSS\tRSS\tGo heap\tGo total\tmemtables\tblock cache\tother\t\t\n")
	for _, r := range rs {
		p := r.Peak
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s (%d)\t%s\t%s\t\t\n", r.Storage, mib(p.RSS), mib(p.GoHeap), mib(p.GoTotal),
			mib(p.MemTables), p.MemCount, mib(p.Cache), mib(p.RSS-p.GoTotal-p.MemTables-p.Cache))
	}
	return tw.Flush()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
