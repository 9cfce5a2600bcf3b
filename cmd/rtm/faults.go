package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/rtm-project/rtm/internal/ops"
	"github.com/rtm-project/rtm/processors/state"
)

// faultEnv names the fault-injection hook of `rtm run`, for the end-to-end
// and chaos tests only: it is not a setting, and nothing is injected when
// it is unset. Its value is a comma-separated list of
//
//	store-fail:STAGE   every local store of STAGE fails its writes (ENOSPC)
//	store-hang:STAGE   every write of STAGE's stores blocks forever
//
// each armed once STAGE is first ready (after its tables are recovered), so
// the fault hits a running stage, as a full or dead disk does.
const faultEnv = "RTM_FAULT_INJECT"

// storeFaults arms the faults of faultEnv: it returns each faulty stage's
// FaultFS (for pipeline.Config.StoreFS) and starts a watcher that arms them
// when their stage is ready.
func storeFaults(h *ops.Health, log *slog.Logger) (map[string]vfs.FS, error) {
	spec := os.Getenv(faultEnv)
	if spec == "" {
		return nil, nil
	}
	out := map[string]vfs.FS{}
	for _, f := range strings.Split(spec, ",") {
		kind, stageName, ok := strings.Cut(strings.TrimSpace(f), ":")
		if !ok || (kind != "store-fail" && kind != "store-hang") || stageName == "" {
			return nil, fmt.Errorf("%s: %q is not store-fail:STAGE or store-hang:STAGE", faultEnv, f)
		}
		ffs := state.NewFaultFS(vfs.Default)
		out[stageName] = ffs
		log.Warn("fault injection armed", "fault", kind, "stage", stageName)
		go func() {
			for {
				if st, ok := h.Status(stageName); ok && st.State == ops.Running {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			log.Warn("injecting fault", "fault", kind, "stage", stageName)
			if kind == "store-fail" {
				ffs.Fail(syscall.ENOSPC)
			} else {
				ffs.Hang()
			}
		}()
	}
	return out, nil
}
