// Tessera's POV-Ray example: a sphere circling a turning box over an image-mapped floor.
// `clock` runs from 0 at the job's first frame to 1 at its last.
#version 3.7;
#include "colors.inc"
#include "lights.inc"

global_settings { assumed_gamma 1.0 }
camera { location <0, 2, -6> look_at <0, 0.5, 0> }
background { color rgb <0.1, 0.12, 0.2> }

plane {
    y, 0
    pigment { image_map { png "checker.png" } scale 2 rotate x*90 }
}
sphere {
    <sin(clock*2*pi)*1.5, 1, cos(clock*2*pi)*1.5>, 0.8
    pigment { color Red }
    finish { phong 0.8 reflection 0.2 }
}
box {
    <-0.5, 0, -0.5>, <0.5, 1, 0.5>
    pigment { color Green }
    rotate y*clock*360
}
