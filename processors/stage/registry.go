package stage

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics is the factory every stage declares its metrics with. The
// collectors it makes are registered nowhere until RegisterMetrics puts
// them on the registry the process serves: no stage touches Prometheus's
// global registry, and a process (or a test) that runs no stage exports
// none of their metrics.
var Metrics = promauto.With(declared)

var declared = &deferredRegisterer{}

// deferredRegisterer keeps the collectors declared through Metrics.
type deferredRegisterer struct {
	mu sync.Mutex
	cs []prometheus.Collector
}

func (d *deferredRegisterer) Register(c prometheus.Collector) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cs = append(d.cs, c)
	return nil
}

func (d *deferredRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}

func (d *deferredRegisterer) Unregister(c prometheus.Collector) bool { return false }

// RegisterMetrics registers every stage metric on reg. Registering twice
// on one registry is harmless.
func RegisterMetrics(reg prometheus.Registerer) error {
	declared.mu.Lock()
	cs := append([]prometheus.Collector(nil), declared.cs...)
	declared.mu.Unlock()
	var errs []error
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
