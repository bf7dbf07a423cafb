# smart-imaging: requested size, device pixel ratio and network (docs/sizing.md,
# "Size, device pixel ratio and network", "Caches: $smart_imaging_variant",
# and the directives smart_imaging_dpr, _dpr_max, _dpr_header, _network,
# _network_quality_step, _network_thresholds, _max_output_size,
# _max_output_pixels, _accept_ch).  Every image served is checked for its
# type and dimensions ("--- webp:" / "--- image:"), with its Vary,
# Accept-CH / Critical-CH and $smart_imaging_variant (in X-Variant).  Needs
# the module:
#
#   TEST_NGINX_BINARY=/path/to/nginx \
#   TEST_NGINX_LOAD_MODULES=target/debug/libngx_http_smart_imaging_module.so \
#       prove -I t/lib t/005-size-dpr-network.t

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

my %Samples = (
    'sample.jpg' => 'sk_astronaut.jpg',     # 512x512
    'coffee.jpg' => 'sk_coffee.jpg',        # 600x400
);
my $S = SmartImaging::require_samples(\%Samples);

our $Jpeg   = $S->{'sample.jpg'};
our $Coffee = $S->{'coffee.jpg'};
# README's example size: a 1632x1000 source.
our $Photo  = SmartImaging::gradient_png(1632, 1000);
our $Alpha  = SmartImaging::gradient_png(480, 320, alpha => 1);
our $Page   = "<!doctype html><title>t</title><img src=photo.png>\n";
our $Gif    = SmartImaging::tiny_gif();

our @Files = (
    ['sample.jpg', $Jpeg],
    ['coffee.jpg', $Coffee],
    ['photo.png',  $Photo],
    ['alpha.png',  $Alpha],
    ['page.html',  $Page],
    ['hello.txt',  "hello, world\n"],
    ['tiny.gif',   $Gif],
);

# What the module puts in Vary for each set of location settings.
our $VaryDpr    = 'Accept, Sec-CH-DPR, DPR, Sec-CH-Width, Width';
our $VaryDprHdr = 'Accept, X-Device-Pixel-Ratio, Sec-CH-DPR, DPR, Sec-CH-Width, Width';
our $VaryNet    = 'Accept, Save-Data, ECT, Downlink, RTT';
our $VaryBoth   = 'Accept, Sec-CH-DPR, DPR, Sec-CH-Width, Width, Save-Data, ECT, Downlink, RTT';

our $NoWebp = "Accept: image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5\n";

our $Types = <<'_EOC_';
    types {
        text/plain  txt;
        text/html   html;
        image/gif   gif;
        image/jpeg  jpg jpeg;
        image/png   png;
    }
_EOC_

# Every location serves html/; the variant goes into X-Variant.
our $Config = <<'_EOC_';
    add_header X-Variant $smart_imaging_variant always;

    location /off/     { alias $TEST_NGINX_HTML_DIR/; }
    location /plain/   { alias $TEST_NGINX_HTML_DIR/; smart_imaging on; }
    location /dpr/     { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_dpr on; }
    location /dprh/    { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_dpr on;
                         smart_imaging_dpr_header X-Device-Pixel-Ratio; }
    location /dprmax/  { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_dpr on; smart_imaging_dpr_max 2.5; }
    location /net/     { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_network on; }
    location /netdpr/  { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_network on; smart_imaging_dpr on; }
    location /netthr/  { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_network on;
                         smart_imaging_network_thresholds ect=2g; }
    location /capsize/ { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_max_output_size 300 -; }
    location /cappix/  { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_max_output_pixels 50000; }
    location /ach/     { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_dpr on; smart_imaging_network on;
                         smart_imaging_accept_ch on; }
    location /achdpr/  { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_dpr on;
                         smart_imaging_accept_ch critical; }
    location /achnet/  { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_network on;
                         smart_imaging_accept_ch critical; }
    location /achoff/  { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_dpr on; smart_imaging_network on;
                         smart_imaging_accept_ch off; }
_EOC_

# One repetition: the blocks convert large images, and the file must stay
# fast (the other suites repeat each request twice).
repeat_each(1);
no_long_string();

SmartImaging::add_block_defaults(http_config => $Types, config => $Config,
                                 user_files => \@Files);

SmartImaging::add_webp_check(\%Samples);
SmartImaging::add_image_check();
add_response_body_check(SmartImaging::body_sizes_check());

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: README's example: a 1632x1000 source with hei=500 at DPR 1 is 816x500
--- more_headers
Accept: image/webp,*/*
--- request
GET /dpr/photo.png?hei=500
--- response_headers eval
"Content-Type: image/webp\nX-Variant: webp-q100-h500\nVary: $::VaryDpr\n"
--- webp: 816x500
--- no_error_log
[error]



=== TEST 2: README's example at DPR 2 (Sec-CH-DPR: 2, smart_imaging_dpr on): 1632x1000
--- more_headers
Accept: image/webp,*/*
Sec-CH-DPR: 2
--- request
GET /dpr/photo.png?hei=500
--- response_headers eval
"Content-Type: image/webp\nX-Variant: webp-q100-h500-dpr2\nVary: $::VaryDpr\n"
--- webp: 1632x1000
--- no_error_log
[error]



=== TEST 3: README's example at DPR 2 from the URL (dpr=on,2, smart_imaging_dpr off): 1632x1000
--- more_headers
Accept: image/webp,*/*
--- request
GET /plain/photo.png?hei=500&dpr=on,2
--- response_headers
Content-Type: image/webp
X-Variant: webp-q100-h500-dpr2
Vary: Accept
--- webp: 1632x1000
--- no_error_log
[error]



=== TEST 4: wid only, hei only, both (fit in the box), never upscaled
(No side under 100 px: SSIMULACRA 2 scores smaller images badly, and the
guard then keeps the original.)
--- more_headers
Accept: image/webp,*/*
--- request eval
["GET /plain/coffee.jpg?wid=300", "GET /plain/coffee.jpg?hei=100",
 "GET /plain/coffee.jpg?wid=300&hei=100", "GET /plain/coffee.jpg?wid=200&hei=600",
 "GET /plain/coffee.jpg?wid=1000", "GET /plain/coffee.jpg?wid=1000&hei=1000"]
--- response_headers eval
["X-Variant: webp-q100-w300", "X-Variant: webp-q100-h100",
 "X-Variant: webp-q100-w300-h100", "X-Variant: webp-q100-w200-h600",
 "X-Variant: webp-q100-w1000", "X-Variant: webp-q100-w1000-h1000"]
--- webp eval
["300x200", "150x100", "150x100", "200x133", "600x400", "600x400"]
--- no_error_log
[error]



=== TEST 5: smart_imaging_max_output_size 300 -: every client, aspect kept
--- more_headers eval
["Accept: image/webp\n", $::NoWebp, "Accept: image/webp\n", "Accept: image/webp\n"]
--- request eval
["GET /capsize/coffee.jpg", "GET /capsize/coffee.jpg",
 "GET /capsize/coffee.jpg?wid=500", "GET /capsize/coffee.jpg?wid=150"]
--- response_headers eval
["Content-Type: image/webp\nX-Variant: webp-q100-src",
 "Content-Type: image/jpeg\nX-Variant: src-q100-src\nVary: Accept",
 "X-Variant: webp-q100-w500", "X-Variant: webp-q100-w150"]
--- image eval
["webp 300x200", "jpeg 300x200", "webp 300x200", "webp 150x100"]



=== TEST 6: smart_imaging_max_output_pixels 50000: 600x400 becomes 273x182 (49686 pixels)
--- more_headers eval
["Accept: image/webp\n", $::NoWebp, "Accept: image/webp\n"]
--- request eval
["GET /cappix/coffee.jpg", "GET /cappix/coffee.jpg", "GET /cappix/coffee.jpg?wid=150"]
--- image eval
["webp 273x182", "jpeg 273x182", "webp 150x100"]



=== TEST 7: dpr=off in the URL: DPR 1 although the hints say 2
--- more_headers
Accept: image/webp,*/*
Sec-CH-DPR: 2
DPR: 2
--- request
GET /dpr/coffee.jpg?wid=200&dpr=off
--- response_headers
X-Variant: webp-q100-w200
Vary: Accept
--- webp: 200x133



=== TEST 8: dpr=on,1.5 in the URL where smart_imaging_dpr is off
--- more_headers
Accept: image/webp,*/*
Sec-CH-DPR: 3
--- request
GET /plain/coffee.jpg?wid=200&dpr=on,1.5
--- response_headers
X-Variant: webp-q100-w200-dpr1.5
Vary: Accept
--- webp: 300x200



=== TEST 9: smart_imaging_dpr off: the DPR hints are ignored
--- more_headers
Accept: image/webp,*/*
Sec-CH-DPR: 2
--- request
GET /plain/coffee.jpg?wid=200
--- response_headers
X-Variant: webp-q100-w200
Vary: Accept
--- webp: 200x133



=== TEST 10: smart_imaging_dpr_max: Sec-CH-DPR 5 counts as 3 (default), as 2.5 where configured
--- more_headers
Accept: image/webp,*/*
Sec-CH-DPR: 5
--- request eval
["GET /dpr/coffee.jpg?wid=100", "GET /dprmax/coffee.jpg?wid=100",
 "GET /plain/coffee.jpg?wid=100&dpr=on,5"]
--- response_headers eval
["X-Variant: webp-q100-w100-dpr3", "X-Variant: webp-q100-w100-dpr2.5",
 "X-Variant: webp-q100-w100-dpr3"]
--- webp eval
["300x200", "250x167", "300x200"]



=== TEST 11: smart_imaging_dpr_header: X-Device-Pixel-Ratio wins over Sec-CH-DPR, and is in Vary
--- more_headers eval
["Accept: image/webp\nSec-CH-DPR: 3\nX-Device-Pixel-Ratio: 1.5\n",
 "Accept: image/webp\nSec-CH-DPR: 3\n",
 "Accept: image/webp\nX-Device-Pixel-Ratio: 1.5\n"]
--- request eval
["GET /dprh/coffee.jpg?wid=100", "GET /dprh/coffee.jpg?wid=100",
 "GET /dpr/coffee.jpg?wid=200"]
--- response_headers eval
["X-Variant: webp-q100-w100-dpr1.5\nVary: $::VaryDprHdr",
 "X-Variant: webp-q100-w100-dpr3\nVary: $::VaryDprHdr",
 "X-Variant: webp-q100-w200\nVary: $::VaryDpr"]
--- webp eval
["150x100", "300x200", "200x133"]



=== TEST 12: Sec-CH-Width: 828 is the width in physical pixels, not multiplied by the DPR
--- more_headers
Accept: image/webp,*/*
Sec-CH-DPR: 2
Sec-CH-Width: 828
--- request eval
["GET /dpr/photo.png", "GET /dpr/photo.png?wid=300", "GET /plain/photo.png?wid=300"]
--- response_headers eval
["X-Variant: webp-q100-pw828", "X-Variant: webp-q100-w300-dpr2",
 "X-Variant: webp-q100-w300"]
--- webp eval
["828x507", "600x368", "300x184"]



=== TEST 13: the legacy DPR and Width hints
--- more_headers eval
["Accept: image/webp\nDPR: 2\n", "Accept: image/webp\nWidth: 828\nDPR: 2\n",
 "Accept: image/webp\nDPR: 3\nSec-CH-DPR: 1.5\n"]
--- request eval
["GET /dpr/coffee.jpg?wid=200", "GET /dpr/photo.png", "GET /dpr/coffee.jpg?wid=200"]
--- response_headers eval
["X-Variant: webp-q100-w200-dpr2", "X-Variant: webp-q100-pw828",
 "X-Variant: webp-q100-w200-dpr1.5"]
--- webp eval
["400x267", "828x507", "300x200"]



=== TEST 14: no WebP: a JPEG stays a JPEG, resized, with Vary
--- more_headers eval
$::NoWebp
--- request
GET /plain/coffee.jpg?wid=300
--- response_headers
Content-Type: image/jpeg
X-Variant: src-q100-w300
Vary: Accept
--- image: jpeg 300x200



=== TEST 15: no WebP: a PNG with alpha stays a PNG with alpha, resized, with Vary
--- more_headers eval
$::NoWebp
--- request
GET /plain/alpha.png?wid=240
--- response_headers
Content-Type: image/png
X-Variant: src-q100-w240
Vary: Accept
--- image: png 240x160 alpha



=== TEST 16: no WebP, DPR on: the JPEG resized to the DPR's size; at the source size, the original
--- more_headers eval
[$::NoWebp . "Sec-CH-DPR: 2\n", $::NoWebp . "Sec-CH-DPR: 2\n", $::NoWebp]
--- request eval
["GET /dpr/coffee.jpg?wid=200", "GET /dpr/coffee.jpg?wid=300", "GET /dpr/coffee.jpg"]
--- response_headers eval
["Content-Type: image/jpeg\nX-Variant: src-q100-w200-dpr2\nVary: $::VaryDpr",
 "Content-Type: image/jpeg\nX-Variant: src-q100-w300-dpr2\nVary: $::VaryDpr",
 "Content-Type: image/jpeg\nX-Variant: orig\nVary: $::VaryDpr"]
--- image eval
["jpeg 400x267", "jpeg 600x400", "jpeg 600x400"]
--- response_body_like eval
[qr/\A\xff\xd8/, qr/\A\Q$::Coffee\E\z/s, qr/\A\Q$::Coffee\E\z/s]



=== TEST 17: Save-Data: on: q85 (ceiling) and guard 65, and DPR off even with Sec-CH-DPR: 2; smaller than on a good network at the same size
--- more_headers eval
["Accept: image/webp\nSave-Data: on\nSec-CH-DPR: 2\n", "Accept: image/webp\n"]
--- request eval
["GET /netdpr/coffee.jpg?wid=200", "GET /net/coffee.jpg?wid=200"]
--- response_headers eval
["X-Variant: webp-q85-w200\nVary: $::VaryBoth",
 "X-Variant: webp-q100-w200\nVary: $::VaryNet"]
--- webp eval
["200x133", "200x133"]
--- body_sizes: 0 < 1



=== TEST 18: ECT: 2g, Downlink: 0.3, RTT: 600 each mean a poor network; ECT: 4g does not
--- more_headers eval
["Accept: image/webp\nSec-CH-DPR: 2\nECT: 2g\n",
 "Accept: image/webp\nSec-CH-DPR: 2\nDownlink: 0.3\n",
 "Accept: image/webp\nSec-CH-DPR: 2\nRTT: 600\n",
 "Accept: image/webp\nSec-CH-DPR: 2\nECT: 4g\n"]
--- request eval
["GET /netdpr/coffee.jpg?wid=200", "GET /netdpr/coffee.jpg?wid=200",
 "GET /netdpr/coffee.jpg?wid=200", "GET /netdpr/coffee.jpg?wid=200"]
--- response_headers eval
["X-Variant: webp-q85-w200", "X-Variant: webp-q85-w200",
 "X-Variant: webp-q85-w200", "X-Variant: webp-q100-w200-dpr2"]
--- webp eval
["200x133", "200x133", "200x133", "400x267"]
--- body_sizes: 0 = 1 = 2 < 3



=== TEST 19: network=off in the URL opts out (and Vary drops the network hints)
--- more_headers
Accept: image/webp,*/*
Save-Data: on
Sec-CH-DPR: 2
--- request
GET /netdpr/coffee.jpg?wid=200&network=off
--- response_headers eval
"X-Variant: webp-q100-w200-dpr2\nVary: $::VaryDpr"
--- webp: 400x267



=== TEST 20: network=on in the URL opts in where the location has it off
--- more_headers
Accept: image/webp,*/*
Save-Data: on
--- request eval
["GET /plain/coffee.jpg?wid=200&network=on", "GET /plain/coffee.jpg?wid=200"]
--- response_headers eval
["X-Variant: webp-q85-w200\nVary: $::VaryNet", "X-Variant: webp-q100-w200\nVary: Accept"]
--- webp eval
["200x133", "200x133"]
--- body_sizes: 0 < 1



=== TEST 21: smart_imaging_network_thresholds ect=2g: 3g is not poor any more, 2g is
--- more_headers eval
["Accept: image/webp\nECT: 3g\n", "Accept: image/webp\nECT: 2g\n",
 "Accept: image/webp\nECT: 3g\n"]
--- request eval
["GET /netthr/coffee.jpg?wid=200", "GET /netthr/coffee.jpg?wid=200",
 "GET /net/coffee.jpg?wid=200"]
--- response_headers eval
["X-Variant: webp-q100-w200", "X-Variant: webp-q85-w200", "X-Variant: webp-q85-w200"]
--- webp eval
["200x133", "200x133", "200x133"]



=== TEST 22: no WebP on a poor network: the JPEG with the ceiling q85 and guard 65
--- more_headers eval
[$::NoWebp . "Save-Data: on\n", $::NoWebp]
--- request eval
["GET /net/coffee.jpg?wid=200", "GET /net/coffee.jpg?wid=200"]
--- response_headers eval
["X-Variant: src-q85-w200\nVary: $::VaryNet", "X-Variant: src-q100-w200\nVary: $::VaryNet"]
--- image eval
["jpeg 200x133", "jpeg 200x133"]
--- body_sizes: 0 < 1



=== TEST 23: Vary: only Accept without DPR or network; the hints with them; none of the DPR hints for dpr=on,2
--- more_headers
Accept: image/webp,*/*
--- request eval
["GET /plain/coffee.jpg", "GET /dpr/coffee.jpg", "GET /dprh/coffee.jpg",
 "GET /net/coffee.jpg", "GET /netdpr/coffee.jpg",
 "GET /dpr/coffee.jpg?dpr=on,2", "GET /dprh/coffee.jpg?dpr=on,2",
 "GET /netdpr/coffee.jpg?dpr=on,2", "GET /plain/coffee.jpg?dpr=on"]
--- response_headers eval
["Vary: Accept", "Vary: $::VaryDpr", "Vary: $::VaryDprHdr",
 "Vary: $::VaryNet", "Vary: $::VaryBoth",
 "Vary: Accept", "Vary: Accept",
 "Vary: $::VaryNet", "Vary: $::VaryDpr"]
--- webp eval
["600x400", "600x400", "600x400", "600x400", "600x400",
 "600x400", "600x400", "600x400", "600x400"]



=== TEST 24: Vary on the original served to a client without WebP, in each location
--- more_headers eval
$::NoWebp
--- request eval
["GET /plain/coffee.jpg", "GET /dprh/coffee.jpg", "GET /netdpr/coffee.jpg"]
--- response_headers eval
["X-Variant: orig\nVary: Accept", "X-Variant: orig\nVary: $::VaryDprHdr",
 "X-Variant: orig\nVary: $::VaryBoth"]
--- response_body eval
[$::Coffee, $::Coffee, $::Coffee]



=== TEST 25: smart_imaging_accept_ch on: Accept-CH (no Critical-CH) on an image and on the HTML page
--- more_headers
Accept: image/webp,text/html,*/*
--- request eval
["GET /ach/coffee.jpg", "GET /ach/page.html"]
--- response_headers eval
["Accept-CH: Sec-CH-DPR, Sec-CH-Width, ECT, Downlink, RTT\n!Critical-CH\n",
 "Accept-CH: Sec-CH-DPR, Sec-CH-Width, ECT, Downlink, RTT\n!Critical-CH\nContent-Type: text/html\n!Vary\n"]
--- response_body_like eval
[qr/\ARIFF/, qr/\A\Q$::Page\E\z/]



=== TEST 26: smart_imaging_accept_ch critical with DPR: Accept-CH and Critical-CH on an image and on the HTML page
--- more_headers
Accept: image/webp,text/html,*/*
--- request eval
["GET /achdpr/coffee.jpg", "GET /achdpr/page.html"]
--- response_headers eval
["Accept-CH: Sec-CH-DPR, Sec-CH-Width\nCritical-CH: Sec-CH-DPR, Sec-CH-Width\n",
 "Accept-CH: Sec-CH-DPR, Sec-CH-Width\nCritical-CH: Sec-CH-DPR, Sec-CH-Width\n"]
--- response_body_like eval
[qr/\ARIFF/, qr/\A\Q$::Page\E\z/]



=== TEST 27: smart_imaging_accept_ch critical with network: Accept-CH and Critical-CH on an image and on the HTML page
--- more_headers
Accept: image/webp,text/html,*/*
--- request eval
["GET /achnet/coffee.jpg", "GET /achnet/page.html"]
--- response_headers eval
["Accept-CH: ECT, Downlink, RTT\nCritical-CH: ECT, Downlink, RTT\n",
 "Accept-CH: ECT, Downlink, RTT\nCritical-CH: ECT, Downlink, RTT\n"]
--- response_body_like eval
[qr/\ARIFF/, qr/\A\Q$::Page\E\z/]



=== TEST 28: smart_imaging_accept_ch off (and unset): no Accept-CH, no Critical-CH
--- more_headers
Accept: image/webp,text/html,*/*
--- request eval
["GET /achoff/coffee.jpg", "GET /achoff/page.html", "GET /netdpr/coffee.jpg",
 "GET /netdpr/page.html"]
--- response_headers eval
["!Accept-CH\n!Critical-CH\n", "!Accept-CH\n!Critical-CH\n",
 "!Accept-CH\n!Critical-CH\n", "!Accept-CH\n!Critical-CH\n"]



=== TEST 29: $smart_imaging_variant: webp-q100-src, src-q100-w400, orig, off; the converted ETag ends with it
--- more_headers eval
["Accept: image/webp\n", $::NoWebp, $::NoWebp, "Accept: image/webp\n"]
--- request eval
["GET /plain/coffee.jpg", "GET /plain/coffee.jpg?wid=400", "GET /plain/coffee.jpg",
 "GET /plain/coffee.jpg?bfc=off"]
--- response_headers_like eval
SmartImaging::headers_like(
["X-Variant: webp-q100-src", "X-Variant: src-q100-w400", "X-Variant: orig",
 "X-Variant: off\n!Vary"],
['ETag: ^W/"[0-9a-f]+-[0-9a-f]+-webp-q100-src"$',
 'ETag: ^W/"[0-9a-f]+-[0-9a-f]+-src-q100-w400"$',
 'ETag: ^"[0-9a-f]+-[0-9a-f]+"$',
 'ETag: ^"[0-9a-f]+-[0-9a-f]+"$'])
--- image eval
["webp 600x400", "jpeg 400x267", "jpeg 600x400", "jpeg 600x400"]



=== TEST 30: $smart_imaging_variant: webp-q85-w400 on Save-Data, webp-q100-pw828 for Sec-CH-Width: 828, README's webp-q100-w400-dpr2
--- more_headers eval
["Accept: image/webp\nSave-Data: on\nSec-CH-DPR: 2\n",
 "Accept: image/webp\nSec-CH-Width: 828\n",
 "Accept: image/webp\nSec-CH-DPR: 2\n"]
--- request eval
["GET /netdpr/photo.png?wid=400", "GET /dpr/photo.png", "GET /dpr/photo.png?wid=400"]
--- response_headers_like eval
SmartImaging::headers_like(
["X-Variant: webp-q85-w400", "X-Variant: webp-q100-pw828", "X-Variant: webp-q100-w400-dpr2"],
['ETag: ^W/"[0-9a-f]+-[0-9a-f]+-webp-q85-w400"$',
 'ETag: ^W/"[0-9a-f]+-[0-9a-f]+-webp-q100-pw828"$',
 'ETag: ^W/"[0-9a-f]+-[0-9a-f]+-webp-q100-w400-dpr2"$'])
--- webp eval
["400x245", "828x507", "800x490"]



=== TEST 31: $smart_imaging_variant is empty where smart_imaging is off (add_header then adds nothing)
--- more_headers
Accept: image/webp,*/*
Sec-CH-DPR: 2
--- request eval
["GET /off/coffee.jpg?wid=200", "GET /off/page.html"]
--- response_headers eval
["!X-Variant\n!Vary\nContent-Type: image/jpeg", "!X-Variant\n!Vary"]
--- response_body eval
[$::Coffee, $::Page]



=== TEST 32: malformed arguments are ignored: the image is served as if they were absent
--- more_headers
Accept: image/webp,*/*
--- request eval
["GET /netdpr/sample.jpg?wid=abc", "GET /netdpr/sample.jpg?hei=0",
 "GET /netdpr/sample.jpg?dpr=on,-1", "GET /netdpr/sample.jpg?dpr=maybe",
 "GET /netdpr/sample.jpg?network=sometimes", "GET /netdpr/sample.jpg?wid=99999999",
 "GET /netdpr/sample.jpg?wid=abc&hei=0&dpr=on,-1&network=sometimes",
 "GET /netdpr/sample.jpg"]
--- response_headers eval
[("X-Variant: webp-q100-src\nContent-Type: image/webp\nVary: $::VaryBoth") x 8]
--- webp eval
[("sample.jpg") x 8]
--- body_sizes: 0 = 7 = 1 = 2 = 3 = 4 = 5 = 6
--- no_error_log
[error]
[alert]
[warn]



=== TEST 33: malformed arguments to a client without WebP: the original, byte for byte
--- more_headers eval
$::NoWebp
--- request eval
["GET /netdpr/sample.jpg?wid=abc", "GET /netdpr/sample.jpg?hei=0",
 "GET /netdpr/sample.jpg?dpr=on,-1", "GET /netdpr/sample.jpg?dpr=maybe",
 "GET /netdpr/sample.jpg?network=sometimes", "GET /netdpr/sample.jpg?wid=99999999"]
--- response_headers eval
[("X-Variant: orig\nContent-Type: image/jpeg") x 6]
--- response_body eval
[($::Jpeg) x 6]
--- no_error_log
[error]



=== TEST 34: non-image responses are untouched by sizes, DPR and network (no resizing, no Vary)
--- more_headers
Accept: image/webp,*/*
Sec-CH-DPR: 2
Sec-CH-Width: 828
Save-Data: on
--- request eval
["GET /netdpr/page.html?wid=100&hei=100&dpr=on,2",
 "GET /netdpr/hello.txt?wid=100&hei=100&dpr=on,2",
 "GET /netdpr/tiny.gif?wid=100&hei=100&dpr=on,2",
 "GET /cappix/page.html?wid=100", "GET /capsize/tiny.gif?hei=1"]
--- response_headers eval
["Content-Type: text/html\n!Vary", "Content-Type: text/plain\n!Vary",
 "Content-Type: image/gif\n!Vary", "Content-Type: text/html\n!Vary",
 "Content-Type: image/gif\n!Vary"]
--- response_body eval
[$::Page, "hello, world\n", $::Gif, $::Page, $::Gif]



=== TEST 35: bfc=off where smart_imaging_accept_ch is on: exactly what nginx sends without the module
--- more_headers
Accept: image/webp,*/*
--- request eval
["GET /ach/coffee.jpg?bfc=off", "GET /achnet/coffee.jpg?bfc=off"]
--- response_headers eval
["X-Variant: off\nContent-Type: image/jpeg\n!Vary\n!Accept-CH\n!Critical-CH\n",
 "X-Variant: off\nContent-Type: image/jpeg\n!Vary\n!Accept-CH\n!Critical-CH\n"]
--- response_body eval
[$::Coffee, $::Coffee]
