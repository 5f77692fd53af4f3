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
// environment variable. Errors name the setting. An argument that is not a
// flag is refused: the flag package would silently ignore every flag after it.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: every setting is a flag (-name value)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if a, ok := f.Value.(*alias); ok {
			// A short name yields to its long one: given on the command
			// line, or in the environment.
			if _, long := os.LookupEnv(EnvName(a.target)); set[a.target] || long {
				return
			}
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

// Alias adds -name as another name of the flag target, already in fs: the
// same setting, so neither name's environment variable overrides the
// other name given on the command line (the long name wins when both are
// in the environment).
func Alias(fs *flag.FlagSet, name, target string) {
	t := fs.Lookup(target)
	if t == nil {
		panic("config: alias of an unknown flag -" + target)
	}
	fs.Var(&alias{fs: fs, target: target}, name, "the same as -"+target+": "+t.Usage)
}

type alias struct {
	fs     *flag.FlagSet
	target string
}

func (a *alias) String() string {
	if a == nil || a.fs == nil {
		return ""
	}
	return a.fs.Lookup(a.target).Value.String()
}
func (a *alias) Set(v string) error { return a.fs.Set(a.target, v) }

// IsBoolFlag lets a bool's alias be given without a value, as the flag itself.
func (a *alias) IsBoolFlag() bool {
	b, ok := a.fs.Lookup(a.target).Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
