package main

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/rtm-project/rtm/config"
)

// The deployment files (docker-compose.yml, deploy/) are checked here, in
// the rtm command's own package, because what they must agree with lives
// here: the commands (newRoot), which setting groups each command reads
// (settings), and the defaults. No Docker engine or cluster runs them in
// these tests; what can be checked without one is.

// repoRoot is where the deployment files are, from this package.
const repoRoot = "../.."

// invocation is one way a deployment file runs rtm: its arguments and the
// environment variable names it sets.
type invocation struct {
	where string // e.g. "compose service detect"
	args  []string
	env   map[string]string
}

// check reports every problem with inv: a command that does not exist,
// a flag or argument it refuses, an RTM_* variable that is no setting, or
// one the command does not read (set, but silently ignored).
func (inv invocation) check() []string {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, inv.where+": "+fmt.Sprintf(format, a...)) }
	root := newRoot()
	c, rest, err := root.Find(inv.args)
	if err != nil || c == root || !c.Runnable() {
		bad("rtm %s is not a command (%v)", strings.Join(inv.args, " "), err)
		return errs
	}
	if err := c.ParseFlags(rest); err != nil {
		bad("rtm %s: %v", strings.Join(inv.args, " "), err)
	} else if err := c.ValidateArgs(c.Flags().Args()); err != nil {
		bad("rtm %s: %v", strings.Join(inv.args, " "), err)
	}
	groups := append([]config.Group{config.GroupLog}, settings[c.CommandPath()]...)
	for name := range inv.env {
		if !strings.HasPrefix(name, "RTM_") || name == "RTM_CONFIG" {
			continue
		}
		f, ok := settingByEnv(name)
		switch {
		case !ok:
			bad("%s is not an rtm setting (config/fields.go)", name)
		case !f.In(groups):
			bad("%s (%s) is not read by %s (it reads %v)", name, f.Key, c.CommandPath(), groups)
		}
	}
	return errs
}

// command is the rtm command path inv runs, e.g. "rtm run".
func (inv invocation) command() string {
	c, _, err := newRoot().Find(inv.args)
	if err != nil {
		return ""
	}
	return c.CommandPath()
}

// flagOrEnv is the value inv gives a setting, by flag or by environment
// variable, or the default.
func (inv invocation) setting(key string) string {
	for _, f := range config.Fields {
		if f.Key != key {
			continue
		}
		for i, a := range inv.args {
			if a == "--"+f.Flag && i+1 < len(inv.args) {
				return inv.args[i+1]
			}
			if v, ok := strings.CutPrefix(a, "--"+f.Flag+"="); ok {
				return v
			}
		}
		if v, ok := inv.env[f.Env]; ok {
			return v
		}
	}
	d := config.Defaults()
	switch key {
	case "http_addr":
		return d.HTTPAddr
	case "data_dir":
		return d.DataDir
	case "shutdown_timeout":
		return d.ShutdownTimeout.String()
	}
	return ""
}

// opsPort is the port of inv's /healthz, /readyz and /metrics.
func (inv invocation) opsPort() string {
	_, port, _ := net.SplitHostPort(inv.setting("http_addr"))
	return port
}

func (inv invocation) shutdownTimeout() time.Duration {
	d, _ := time.ParseDuration(inv.setting("shutdown_timeout"))
	return d
}

// stage is the --stage of an `rtm run`, or "".
func (inv invocation) stage() string {
	if i := slices.Index(inv.args, "--stage"); i >= 0 && i+1 < len(inv.args) {
		return inv.args[i+1]
	}
	return ""
}

// settingByEnv finds the setting read from name (RTM_X, or RTM_X_FILE for
// a secret).
func settingByEnv(name string) (config.Field, bool) {
	for _, f := range config.Fields {
		if f.Env == name || (f.Secret && f.Env+"_FILE" == name) {
			return f, true
		}
	}
	return config.Field{}, false
}

// longRunning are the commands that serve /readyz and must be probed.
var longRunning = []string{"rtm run", "rtm cdc", "rtm collect", "rtm sinks"}
