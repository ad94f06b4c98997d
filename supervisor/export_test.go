package supervisor

// For the tests of package supervisor_test: limits of the control
// protocol, which is not API.
const MaxRequestSize = maxRequestSize
