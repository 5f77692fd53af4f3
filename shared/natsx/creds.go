package natsx

import (
	"fmt"
	"os"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/volcanion/tracking/shared/subject"
)

// Credentials are the options of a connection with a .creds file: the
// credentials, and the inbox prefix of the user they name (the only inbox
// its permissions let it read; see subject.InboxPrefix).
func Credentials(path string) ([]nats.Option, error) {
	user, err := CredsUser(path)
	if err != nil {
		return nil, err
	}
	return []nats.Option{nats.UserCredentials(path), nats.CustomInboxPrefix(subject.InboxPrefix(user))}, nil
}

// CredsUser is the user name a .creds file holds (a role, or partner-<id>).
func CredsUser(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("natsx: credentials: %w", err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return "", fmt.Errorf("natsx: credentials %s: %w", path, err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return "", fmt.Errorf("natsx: credentials %s: %w", path, err)
	}
	if uc.Name == "" {
		return "", fmt.Errorf("natsx: credentials %s name no user", path)
	}
	return uc.Name, nil
}
