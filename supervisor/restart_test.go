package supervisor

import (
	"testing"
	"time"
)

func TestRestartBackoff(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{6, 3200 * time.Millisecond},
		{7, 5 * time.Second},
		{100, 5 * time.Second}, // no overflow into a negative duration
	} {
		if got := restartBackoff(tc.n); got != tc.want {
			t.Errorf("restartBackoff(%d) = %v; want %v", tc.n, got, tc.want)
		}
	}
}
