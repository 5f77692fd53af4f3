// Command natsauth writes the NATS operator-mode auth of the production
// topology and mints partner credentials.
//
//	natsauth init -dir DIR                       keys, auth.conf and <role>.creds
//	natsauth partner -dir DIR -partner ID        credentials of a partner's internal service (stdout)
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/volcanion/tracking/shared/natsauth"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", "./data/nats-auth", "directory of the keys, auth.conf and creds")
	partner := fs.String("partner", "", "partner id (partner)")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "init":
		if err := natsauth.Init(*dir); err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "natsauth: wrote %s/auth.conf and creds for %v\n", *dir, natsauth.Roles)
	case "partner":
		creds, err := natsauth.PartnerCreds(*dir, *partner)
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(creds)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: natsauth init -dir DIR | natsauth partner -dir DIR -partner ID")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "natsauth:", err)
	os.Exit(1)
}
