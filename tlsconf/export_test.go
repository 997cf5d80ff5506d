package tlsconf

import "time"

// SetAfterFunc replaces time.AfterFunc for m's second look at a key that
// did not match its certificate, so that tests run it when they choose,
// after moving their clock, instead of sleeping.
func (m *Manager) SetAfterFunc(f func(time.Duration, func())) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.afterFunc = f
}
