package registry

// InFlight is the requests each of the registry's pools holds at once.
const InFlight = inFlight
