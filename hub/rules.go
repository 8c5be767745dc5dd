package hub

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Rules say which channels exist and who may do what on them. Patterns
// are path.Match globs over channel names ("news", "chat.*", "*").
type Rules struct {
	// Channels that exist. Default ["*"]: any valid name.
	Channels []string
	// BrowserPublish: channels browsers may publish to. Default none:
	// only backends publish, through the HTTP API.
	BrowserPublish []string
	// PublishUnsubscribed lets a browser publish to a channel it is not
	// subscribed to. Default false: a browser publishes only where it
	// reads, and, with TokenSecret, only with a token for the channel.
	PublishUnsubscribed bool
	// TokenSecret, when set, makes subscribing require a token: an
	// HMAC-SHA256 JWT passed as the `token` query parameter of the SockJS
	// URL, with an `exp` and a `channels` claim (a list of patterns).
	TokenSecret []byte
}

// validName: channel names are 1-128 characters of [A-Za-z0-9_.:-], so
// they are safe in logs, URLs and Redis keys.
var validName = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func (r Rules) withDefaults() Rules {
	if len(r.Channels) == 0 {
		r.Channels = []string{"*"}
	}
	return r
}

// Exists reports whether name is a channel.
func (r Rules) Exists(name string) bool {
	return validName.MatchString(name) && matchAny(r.Channels, name)
}

// CanPublish reports whether browsers may publish to name.
func (r Rules) CanPublish(name string) bool { return matchAny(r.BrowserPublish, name) }

// Claims are a subscribe token's claims.
type Claims struct {
	Channels []string `json:"channels"`
	jwt.RegisteredClaims
}

// Token errors.
var (
	ErrNoToken    = errors.New("a token is required for this channel")
	ErrBadToken   = errors.New("invalid token")
	ErrNotAllowed = errors.New("the token does not allow this channel")
)

// checkToken verifies a subscribe token for channel.
func (r Rules) checkToken(token, channel string) error {
	if len(r.TokenSecret) == 0 {
		return nil
	}
	c, err := r.parseToken(token)
	if err != nil {
		return err
	}
	if !matchAny(c.Channels, channel) {
		return ErrNotAllowed
	}
	return nil
}

// parseToken verifies a token (signature, HS256, an exp not past) and
// returns its claims.
func (r Rules) parseToken(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return r.TokenSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(tokenLeeway))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return &c, nil
}

// tokenLeeway is the clock skew a token's exp is allowed when it is
// checked (not when its session is closed: that happens at exp).
const tokenLeeway = 5 * time.Second

// SignToken makes a subscribe token for channel patterns, valid for ttl:
// what a backend gives a page.
func SignToken(secret []byte, channels []string, ttl time.Duration) (string, error) {
	c := Claims{Channels: channels, RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
