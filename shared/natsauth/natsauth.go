// Package natsauth sets up NATS decentralised auth (operator mode) for the
// production topology: one operator, a system account, and the TRK account
// that holds the streams, with a user per role whose permissions are the
// least that role needs. Partner internal services get users that may publish
// only to their own partner's subjects, minted at any time without a server
// reload; the server itself refuses anything else.
//
// Init writes into a directory: the keys (*.nk, keep them secret), the
// auth.conf that nats.conf includes, and one <role>.creds file per role.
package natsauth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/volcanion/tracking/shared/dlqapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// Roles are the service users Init creates.
var Roles = []string{"edge", "workers", "registry", "reporter", "admin"}

type perms struct {
	pub, sub, pubDeny []string
	respond           bool
}

func jsAPI(s ...string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = "$JS.API." + x
	}
	return out
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

const (
	ev, dlq, rc = subject.EventsStream, subject.DeadLetterStream, subject.RegistryChangesStream
)

// rolePerms is the written rule of who may do what.
var rolePerms = map[string]perms{
	// Edges publish events, call the registry and reporter, check the
	// streams they need and follow registry changes with an ordered consumer.
	// Streams are created by the provisioning step (admin), never by a service.
	"edge": {
		pub: concat([]string{subject.EventsAll, subject.RegistryPrefix + ".>", subject.ReporterPrefix + ".>", dlqapi.Prefix + ".>"},
			jsAPI("INFO", "STREAM.INFO.*",
				"CONSUMER.CREATE."+rc+".>", "CONSUMER.DELETE."+rc+".>", "CONSUMER.INFO."+rc+".>", "CONSUMER.MSG.NEXT."+rc+".>")),
		pubDeny: []string{subject.RegistryChanges},
		sub:     []string{inbox("edge"), subject.TailAll}, // the live tail
	},
	// Workers consume events, purge the stored ones, dead-letter the
	// unstorable and ask the registry whether a partner's sub-system exists.
	// They also serve the dead-letter service, whose replay publishes
	// events again, and whose list checks a partner's forwarded key with the
	// registry's auth.key.
	"workers": {
		pub: concat([]string{subject.DeadLetterAll, subject.EventsAll, subject.TailAll, subject.Registry("subsystems.list"), subject.Registry("partners.get"), subject.Registry("auth.key"), "$JS.ACK." + ev + ".>"},
			jsAPI("INFO", "STREAM.INFO.*", "CONSUMER.INFO."+ev+".>", "CONSUMER.MSG.NEXT."+ev+".>",
				"STREAM.PURGE."+ev, "STREAM.MSG.GET."+dlq, "STREAM.MSG.DELETE."+dlq)),
		sub:     []string{inbox("workers"), dlqapi.Prefix + ".>", "$SRV.>"},
		respond: true,
	},
	// The registry serves its subjects and broadcasts changes.
	"registry": {
		pub:     concat([]string{subject.RegistryChanges}, jsAPI("INFO", "STREAM.INFO."+rc)),
		sub:     []string{subject.RegistryPrefix + ".>", "$SRV.>", inbox("registry")},
		respond: true,
	},
	// The reporter answers report queries and checks the partner keys edges
	// forward with the registry's auth.key (which answers only a holder of
	// the key's secret), and nothing else of the registry.
	// It reads the EVENTS stream's state to say how complete its answers are.
	// It follows registry changes (a rename) to recompute cached answers.
	"reporter": {
		pub: concat([]string{subject.Registry("auth.key")}, jsAPI("INFO", "STREAM.INFO."+ev,
			"CONSUMER.CREATE."+rc+".>", "CONSUMER.DELETE."+rc+".>", "CONSUMER.INFO."+rc+".>", "CONSUMER.MSG.NEXT."+rc+".>")),
		sub:     []string{subject.ReporterPrefix + ".>", "$SRV.>", inbox("reporter")},
		respond: true,
	},
	"admin": {pub: []string{">"}, sub: []string{">"}},
}

// inbox is the only reply subject space a user may read: its own
// (clients set it with natsx.Credentials, or nats.CustomInboxPrefix).
func inbox(user string) string { return subject.InboxPrefix(user) + ".>" }

// PartnerUser is the NATS user name of a partner's internal services.
func PartnerUser(partnerID string) string { return "partner-" + partnerID }

// PartnerPerms: publish events of one partner only, and receive the acks
// in the partner's own inbox.
func partnerPerms(partnerID string) perms {
	return perms{pub: []string{subject.EventsPrefix + partnerID + ".>"}, sub: []string{inbox(PartnerUser(partnerID))}}
}

func loadOrCreate(dir, name string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	path := filepath.Join(dir, name+".nk")
	if seed, err := os.ReadFile(path); err == nil {
		return nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	kp, err := create()
	if err != nil {
		return nil, err
	}
	seed, _ := kp.Seed()
	return kp, os.WriteFile(path, seed, 0o600)
}

// Init creates (or reuses) the keys in dir and writes auth.conf and the role creds.
func Init(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	op, err := loadOrCreate(dir, "operator", nkeys.CreateOperator)
	if err != nil {
		return err
	}
	sys, err := loadOrCreate(dir, "account-sys", nkeys.CreateAccount)
	if err != nil {
		return err
	}
	trk, err := loadOrCreate(dir, "account-trk", nkeys.CreateAccount)
	if err != nil {
		return err
	}
	opPub, _ := op.PublicKey()
	sysPub, _ := sys.PublicKey()
	trkPub, _ := trk.PublicKey()

	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "volcanion"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		return err
	}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(op)
	if err != nil {
		return err
	}
	ac := jwt.NewAccountClaims(trkPub)
	ac.Name = "TRK"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	trkJWT, err := ac.Encode(op)
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`# Generated by natsauth.Init: operator-mode auth for nats.conf. Do not edit.
operator: %s
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %s
  %s: %s
}
`, opJWT, sysPub, sysPub, sysJWT, trkPub, trkJWT)
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	for _, role := range Roles {
		creds, err := mint(trk, role, rolePerms[role])
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, role+".creds"), creds, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// AccountKey is the public key of the TRK account whose keys are in dir:
// the name of its JetStream store directory.
func AccountKey(dir string) (string, error) {
	seed, err := os.ReadFile(filepath.Join(dir, "account-trk.nk"))
	if err != nil {
		return "", fmt.Errorf("natsauth: account key (run init first): %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return "", err
	}
	return kp.PublicKey()
}

// PartnerCreds mints credentials for an internal service of one partner:
// it may publish to trk.events.<partnerId>.> and nothing else.
func PartnerCreds(dir, partnerID string) ([]byte, error) {
	if !tenant.ValidID(partnerID) {
		return nil, fmt.Errorf("natsauth: %q is not a partner id", partnerID)
	}
	seed, err := os.ReadFile(filepath.Join(dir, "account-trk.nk"))
	if err != nil {
		return nil, fmt.Errorf("natsauth: account key (run init first): %w", err)
	}
	trk, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return nil, err
	}
	return mint(trk, PartnerUser(partnerID), partnerPerms(partnerID))
}

func mint(account nkeys.KeyPair, name string, p perms) ([]byte, error) {
	u, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	uPub, _ := u.PublicKey()
	uc := jwt.NewUserClaims(uPub)
	uc.Name = name
	uc.Pub.Allow.Add(p.pub...)
	uc.Pub.Deny.Add(p.pubDeny...)
	uc.Sub.Allow.Add(p.sub...)
	if p.respond {
		uc.Resp = &jwt.ResponsePermission{MaxMsgs: 1}
	}
	if len(p.pub) == 0 {
		// An empty allow list allows everything; replies stay possible
		// through the response permission.
		uc.Pub.Deny.Add(">")
	}
	token, err := uc.Encode(account)
	if err != nil {
		return nil, err
	}
	seed, _ := u.Seed()
	return jwt.FormatUserConfig(token, seed)
}
