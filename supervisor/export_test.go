package supervisor

// For the tests of package supervisor_test: limits of the control
// protocol, which is not API.
const MaxRequestSize = maxRequestSize

// ParseMetrics reads metrics text with the strict checker of
// metrics_test.go and returns every sample by its series as written
// (name{labels}).
func ParseMetrics(text string) (map[string]float64, error) {
	p, err := parseExposition(text)
	if err != nil {
		return nil, err
	}
	return p.samples, nil
}
