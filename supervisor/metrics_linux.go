package supervisor

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// metricsTimeout bounds how long a scrape waits for the run loop's
// snapshot: the loop answers at once unless events pile up, and a
// Prometheus server's scrape timeout is 10s by default; a late answer is
// a 503, never a wait on the loop.
const metricsTimeout = 2 * time.Second

// metricsReadTimeout bounds the reading of a scrape's request: a client
// that connects and says nothing would hold a goroutine of the master.
const metricsReadTimeout = 10 * time.Second

// openMetrics listens on cfg.Metrics, if set. New calls it, so that an
// address in use is an error before anything starts.
func (m *Master) openMetrics() error {
	if m.cfg.Metrics == "" {
		return nil
	}
	addr, loopback, err := metricsAddr(m.cfg.Metrics)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	m.metricsLn, m.metricsLoop = ln, loopback
	return nil
}

// serveMetrics serves GET /metrics until the listener is closed.
func (m *Master) serveMetrics() {
	if m.metricsLn == nil {
		return
	}
	if !m.metricsLoop {
		m.log.Warn("metrics served on an address that is not loopback: anyone who reaches it sees the pids, memory and failures of the service", "addr", m.metricsLn.Addr().String())
	} else {
		m.log.Info("serving metrics", "addr", m.metricsLn.Addr().String())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), metricsTimeout)
		defer cancel()
		st, err := m.snapshot(ctx)
		if err != nil {
			http.Error(w, "baton: no status from the master within "+metricsTimeout.String(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", MetricsContentType)
		WriteMetrics(w, st)
	})
	m.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: metricsReadTimeout}
	go func() {
		if err := m.metricsSrv.Serve(m.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Warn("metrics", "err", err)
		}
	}()
}

// closeMetrics stops serving metrics.
func (m *Master) closeMetrics() {
	switch {
	case m.metricsSrv != nil:
		m.metricsSrv.Close() // closes the listener too
		m.metricsSrv = nil
	case m.metricsLn != nil:
		m.metricsLn.Close()
	}
	m.metricsLn = nil
}
