// Package config reads settings from flags with environment-variable
// fallbacks: a flag named "nats-url" is also read from VT_NATS_URL. A flag
// given on the command line wins over the environment.
package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName is the environment variable read for a flag.
func EnvName(flagName string) string {
	return "VT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then fills every flag not given from its
// environment variable. Errors name the setting.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("invalid value %q for %s (-%s): %w", v, EnvName(f.Name), f.Name, e)
			}
		}
	})
	return err
}

// Errorf makes a validation error that names the setting.
func Errorf(flagName, format string, args ...any) error {
	return fmt.Errorf("invalid setting -%s (%s): %s", flagName, EnvName(flagName), fmt.Sprintf(format, args...))
}
