package baton

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// What a generation can tell about the service, for a status page or
// metrics: itself, the older generations still running (from the lineage
// that bounded generations pass on, draining.go) and the service's
// upgrades. The counts are the service's, not this process's: each
// generation passes them to its successor in the reserved state blob
// statsState, so generation 40 knows of the failures generation 3 saw.

// GenerationState is where a generation stands, in Status.
type GenerationState string

const (
	// GenStarting: New has returned, Ready has not.
	GenStarting GenerationState = "starting"
	// GenProbation: ready and serving beside its predecessor, which has
	// not yet said that the probation passed (Options.Probation).
	GenProbation GenerationState = "probation"
	// GenServing: ready, and the one that names the service.
	GenServing GenerationState = "serving"
	// GenUpgrading: serving while a successor starts or is on probation.
	GenUpgrading GenerationState = "upgrading"
	// GenDraining: a successor took over; this generation drains.
	GenDraining GenerationState = "draining"
	// GenStopped: stopped for good (Stop with no successor).
	GenStopped GenerationState = "stopped"
)

// Status is what Upgrader.Status returns. Its JSON is meant for a status
// endpoint, and has the shape of "baton status --json"'s generations and
// upgrades; where the system does not say (not Linux, or the process is
// gone) connections are -1 and RSS 0, as there.
type Status struct {
	// Generations: this one first, then the older generations still
	// running, newest first.
	Generations []GenerationStatus `json:"generations"`
	Upgrades    UpgradeStats       `json:"upgrades"`
	// Restarts counts the supervised restarts the service went through
	// (a new instance took over through Options.Control).
	Restarts int `json:"restarts"`
	// Relay counts the datagrams this generation relayed to and from
	// the others (RelayPacket): all zero for a service that relays none.
	Relay RelayStats `json:"relay"`
}

// GenerationStatus is one generation in Status.
type GenerationStatus struct {
	Generation int             `json:"generation"`
	PID        int             `json:"pid"`
	State      GenerationState `json:"state"`
	// Started is when the process started; Age how long ago that was.
	Started time.Time     `json:"started"`
	Age     time.Duration `json:"age_ns"`
	// DrainingSince is when this generation's successor took over: set
	// only for this generation, which knows it.
	DrainingSince time.Time `json:"draining_since,omitzero"`
	// Connections counts the TCP connections the process holds (not its
	// listeners), -1 if unknown; RSS is its resident memory in bytes, 0 if
	// unknown.
	Connections int   `json:"connections"`
	RSS         int64 `json:"rss_bytes"`
}

// UpgradeStats counts the service's upgrades: handovers to a successor
// that took over (a supervised restart is two: to the interim generation
// and from it) and those that failed, with the last failure.
type UpgradeStats struct {
	OK          int       `json:"ok"`
	Failed      int       `json:"failed"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// maxLastError bounds the last error carried on, so the blob stays small
// whatever an error says.
const maxLastError = 1024

// serviceStats is what travels in statsState.
type serviceStats struct {
	Upgrades UpgradeStats `json:"upgrades"`
	Restarts int          `json:"restarts"`
}

// encodeStats and parseStats are the blob's codec: JSON, read strictly
// (unknown fields, trailing data, negative counts and an overlong error
// are refused), since a blob read wrong would only make the figures lie.
func encodeStats(s serviceStats) []byte {
	if len(s.Upgrades.LastError) > maxLastError {
		s.Upgrades.LastError = s.Upgrades.LastError[:maxLastError]
	}
	b, _ := json.Marshal(s) // plain values: cannot fail
	return b
}

func parseStats(b []byte) (serviceStats, error) {
	var s serviceStats
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return serviceStats{}, fmt.Errorf("baton: stats: %w", err)
	}
	if d.More() {
		return serviceStats{}, errors.New("baton: stats: trailing data")
	}
	if s.Upgrades.OK < 0 || s.Upgrades.Failed < 0 || s.Restarts < 0 {
		return serviceStats{}, errors.New("baton: stats: a negative count")
	}
	if len(s.Upgrades.LastError) > maxLastError {
		return serviceStats{}, fmt.Errorf("baton: stats: last error of %d bytes, more than %d", len(s.Upgrades.LastError), maxLastError)
	}
	return s, nil
}
