package transport

// Limits on what one client can make a service hold (see Options).

// Defaults for the limit options.
const (
	// DefaultMaxIDBytes bounds the server and session ids in a URL.
	// sockjs-client uses 3 and 8 characters, the protocol suite a
	// 36-character UUID.
	DefaultMaxIDBytes = 64
)

func (o *Options) limitDefaults() {
	if o.MaxIDBytes <= 0 {
		o.MaxIDBytes = DefaultMaxIDBytes
	}
}
