//go:build linux

package supervisor_test

import (
	"encoding/json"
	"io"
	"net/http"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func readAll(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
