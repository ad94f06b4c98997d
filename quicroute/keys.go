package quicroute

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"
)

// KeysState is the name of the generation state blob that carries the
// QUIC keys from one generation to the next.
const KeysState = "quicroute.keys"

// keysVersion is the first byte of the blob: a successor that does not
// know it says so instead of reading garbage keys.
const keysVersion = 1

// keysLen is the blob's length: the version, the stateless reset key, the
// token key.
const keysLen = 1 + 32 + 32

// ErrBadKeys is wrapped by Keys' error when the predecessor's blob cannot
// be read.
var ErrBadKeys = errors.New("quicroute: bad QUIC keys in the generation state")

// State is what Keys needs of *baton.Upgrader.
type State interface {
	SetState(name string, b []byte) error
	PredecessorState(name string) ([]byte, bool)
}

// TransportKeys are the keys every generation's quic.Transport must share.
type TransportKeys struct {
	// StatelessReset makes the stateless reset tokens a generation gives
	// out good in the next: a client believes a reset only if its token
	// matches.
	StatelessReset quic.StatelessResetKey
	// Token encrypts the address-validation tokens (NEW_TOKEN, Retry): a
	// client that got one from an older generation skips address
	// validation with a newer one.
	Token quic.TokenGeneratorKey
}

// Keys returns the predecessor's keys from st's state (KeysState), or new
// ones from crypto/rand in a first generation, and saves them for the
// successor. A blob it cannot read is an error wrapping ErrBadKeys: the
// successor then fails to start and its predecessor serves on, rather
// than every client's connection being reset by keys that do not match.
func Keys(st State) (*TransportKeys, error) {
	var k TransportKeys
	if b, ok := st.PredecessorState(KeysState); ok {
		if err := k.parse(b); err != nil {
			return nil, err
		}
	} else {
		if _, err := rand.Read(k.StatelessReset[:]); err != nil {
			return nil, fmt.Errorf("quicroute: new keys: %w", err)
		}
		if _, err := rand.Read(k.Token[:]); err != nil {
			return nil, fmt.Errorf("quicroute: new keys: %w", err)
		}
	}
	if err := st.SetState(KeysState, k.encode()); err != nil {
		return nil, fmt.Errorf("quicroute: saving keys: %w", err)
	}
	return &k, nil
}

func (k *TransportKeys) encode() []byte {
	b := make([]byte, 0, keysLen)
	b = append(b, keysVersion)
	b = append(b, k.StatelessReset[:]...)
	return append(b, k.Token[:]...)
}

func (k *TransportKeys) parse(b []byte) error {
	switch {
	case len(b) == 0:
		return fmt.Errorf("%w: empty", ErrBadKeys)
	case b[0] != keysVersion:
		return fmt.Errorf("%w: version %d, want %d", ErrBadKeys, b[0], keysVersion)
	case len(b) != keysLen:
		return fmt.Errorf("%w: %d bytes, want %d", ErrBadKeys, len(b), keysLen)
	}
	copy(k.StatelessReset[:], b[1:33])
	copy(k.Token[:], b[33:])
	return nil
}
