module github.com/volcanion/tracking/deploy/allinone

go 1.26.0

require (
	github.com/volcanion/tracking/edge v0.0.0
	github.com/volcanion/tracking/registry v0.0.0
	github.com/volcanion/tracking/reporter v0.0.0
	github.com/volcanion/tracking/shared v0.0.0
	github.com/volcanion/tracking/workers v0.0.0
)

replace (
	github.com/volcanion/tracking/edge => ../../edge
	github.com/volcanion/tracking/registry => ../../registry
	github.com/volcanion/tracking/reporter => ../../reporter
	github.com/volcanion/tracking/shared => ../../shared
	github.com/volcanion/tracking/workers => ../../workers
)
