module github.com/volcanion/tracking/edge

go 1.26.0

require github.com/volcanion/tracking/shared v0.0.0

replace github.com/volcanion/tracking/shared => ../shared
