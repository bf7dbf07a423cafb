# Unit tests that need no nginx: the image header parsers of
# t/lib/SmartImaging.pm, and the internals of the project's harness in
# t/lib/Test/Nginx (request building, response parsing, the checks and how
# many tests they make), against what the real Test::Nginx does.  It loads
# t/lib itself, first: under "prove -I REAL/lib" too, it tests t/lib.
#
#   prove -I t/lib t/000-unit.t

use strict;
use warnings;

use Compress::Zlib ();
use Test::More;

use FindBin ();
use lib "$FindBin::Bin/lib";    # SmartImaging and our Test::Nginx, always

use SmartImaging qw(webp_info png_info jpeg_info image_info);

sub unhex { my $h = shift; $h =~ s/\s+//g; return pack 'H*', $h }

# 37x23 images written by cwebp 1.2.4 (from the PNGs built below).
my %webp = (
    lossless => unhex(<<'_HEX_'),
524946463a000000574542505650384c2d0000002f2480050009802006fc2f5b88e87fda0220
08ffe31622fa9f06226d9be2fb573d7a320603181340250792470000
_HEX_
    lossless_alpha => unhex(<<'_HEX_'),
5249464650000000574542505650384c440000002f248005104d004452fb7baf10d1ffb48540
20c99f729b15c6a3e0fd4f3350dab61114dcfd476eefa347c6404890f0dbe91605691bb0a8bb
130062e7b7f45d4070f21100
_HEX_
    lossy => unhex(<<'_HEX_'),
52494646b60000005745425056503820aa0000001007009d012a250017003e5d208d45b9a221
1d5e64019805c4b4004e9942381bd03cc12b0d30ec4041fd2bbfe23e87b7b053fb71f5c8e1f8
52d7e0e21a19d4ff0000fefde4b7124d3de58540bd91d227c1a89e3ffce48ea5160fc92f2e6c
4aad07a80a6b0cdb620b08e82dd846f7d601471b65a39f6ff282c34e25267aceb3e63cd5747b
d91b0507ff663c00902fda587bfb8616bd614f3d046014fe59584aac92d463ed5bbbe79b1000
_HEX_
    lossy_alpha => unhex(<<'_HEX_'),
52494646e600000057454250565038580a00000010000000240000160000414c504815000000
01998ce87f40484048feef5695880998002a8959000056503820aa000000b005009d012a2500
17003e61289045b822a19aadfe01800604b4004e9942381bd43cc12b7d30ec8002cb7f8e7ab4
6594c7b1d14fff5000fefd673b7e642e67ca9df8410511c3bfff336ffc0418ad5e7362646b72
96b4ec574fbfc3d69bfc697c063c53e530c30ee34fc7908c7c2a7dd5e276629983d1ebadf0cb
7066280701498dda087dcfbcdfa40ee8b7caf32795791512bcb862624ecf3392a1098d0f9545
02bc37e0f7e504b18000
_HEX_
);

my %want = (
    lossless       => ['lossless', 0, 0, ['VP8L']],
    lossless_alpha => ['lossless', 1, 0, ['VP8L']],
    lossy          => ['lossy',    0, 0, ['VP8 ']],
    lossy_alpha    => ['lossy',    1, 1, ['VP8X', 'ALPH', 'VP8 ']],
);

for my $k (sort keys %webp) {
    my $i = webp_info($webp{$k});
    my ($format, $alpha, $extended, $chunks) = @{ $want{$k} };
    ok($i, "$k: is webp") or next;
    is($i->{format}, $format, "$k: format");
    is("$i->{width}x$i->{height}", '37x23', "$k: dimensions");
    is($i->{alpha}, $alpha, "$k: alpha");
    is($i->{extended}, $extended, "$k: extended");
    is_deeply($i->{chunks}, $chunks, "$k: chunks");
    is($i->{size_ok}, 1, "$k: RIFF size matches");
    is(image_info($webp{$k})->{type}, 'webp', "$k: image_info type");
}

{
    my $cut = substr($webp{lossy}, 0, 100);
    my $i = webp_info($cut);
    is($i->{size_ok}, 0, 'truncated webp: RIFF size mismatch detected');
    is(webp_info("RIFF\0\0\0\0WAVEfmt \0\0\0\0"), undef,
       'RIFF/WAVE is not webp');
    is(webp_info("\xff\xd8\xff\xe0"), undef, 'jpeg bytes are not webp');
}

# PNG: build real files with zlib.
sub png_chunk {
    my ($type, $data) = @_;
    return pack('N', length $data) . $type . $data
         . pack('N', Compress::Zlib::crc32($type . $data));
}

sub make_png {
    my ($w, $h, $ctype, $bpp, $trns) = @_;
    my $raw = join '', map { "\0" . ("\x80" x ($w * $bpp)) } 1 .. $h;
    return "\x89PNG\r\n\x1a\n"
        . png_chunk('IHDR', pack('NNCCCCC', $w, $h, 8, $ctype, 0, 0, 0))
        . ($trns ? png_chunk('tRNS', "\0\0\0\0\0\0") : '')
        . png_chunk('IDAT', Compress::Zlib::compress($raw))
        . png_chunk('IEND', '');
}

{
    my $i = png_info(make_png(37, 23, 2, 3));
    is_deeply([@$i{qw(width height color_type alpha)}], [37, 23, 2, 0],
              'png rgb');
    $i = png_info(make_png(5, 7, 6, 4));
    is_deeply([@$i{qw(width height color_type alpha)}], [5, 7, 6, 1],
              'png rgba');
    $i = png_info(make_png(5, 7, 2, 3, 1));
    is($i->{alpha}, 1, 'png rgb + tRNS has alpha');
    is(image_info(make_png(1, 1, 0, 1))->{type}, 'png', 'png image_info');
    is(png_info('GIF89a' . ("\0" x 40)), undef, 'gif is not png');
}

# JPEG: markers only (SOI, APP0, DQT-ish filler, SOF0 / SOF2).
{
    my $app0 = "\xff\xe0" . pack('n', 16) . "JFIF\0\x01\x01\0\0\x01\0\x01\0\0";
    my $sof0 = "\xff\xc0" . pack('n', 17) . pack('CnnC', 8, 480, 640, 3)
             . ("\x01\x22\x00" x 3);
    my $i = jpeg_info("\xff\xd8" . $app0 . $sof0 . "\xff\xda");
    is_deeply([@$i{qw(width height components progressive)}],
              [640, 480, 3, 0], 'jpeg baseline SOF0');
    (my $sof2 = $sof0) =~ s/^\xff\xc0/\xff\xc2/;
    $i = jpeg_info("\xff\xd8" . $app0 . $sof2);
    is($i->{progressive}, 1, 'jpeg progressive SOF2');
    is(image_info("\xff\xd8" . $sof0)->{type}, 'jpeg', 'jpeg image_info');
    is(jpeg_info("\xff\xd8\xff\xda\0\x02"), undef, 'SOS before SOF');
}

# Our harness (t/lib/Test/Nginx), always the one in t/lib (use lib above),
# also when the rest of the suite runs under the real Test::Nginx: its
# request building, response parsing and checks, against what the real
# harness does (Test::Nginx 0.33; t/README.md).  Each check is recorded
# rather than reported, then its outcome is asserted.
require Test::Nginx::Socket;
ok(Test::Nginx::Socket->can('_parse_response'), 'our Test::Nginx::Socket')
    or BAIL_OUT('t/lib/Test/Nginx/Socket.pm not loaded');

{
    package FakeBlock;
    our $AUTOLOAD;
    sub new {
        my ($class, %s) = @_;
        $s{name} //= 'fake';
        return bless { map { ($_ => [$s{$_}]) } keys %s }, $class;
    }
    sub AUTOLOAD {
        my $self = shift;
        (my $n = $AUTOLOAD) =~ s/.*:://;
        return if $n eq 'DESTROY' || !exists $self->{$n};
        return wantarray ? @{ $self->{$n} } : $self->{$n}[0];
    }
}

# Runs $code with the Test::More functions the harness calls replaced:
# returns [[outcome (1 pass, 0 fail), function, args...], ...].  A bail out
# dies with "BAIL: message".
sub record {
    my $code = shift;
    my @r;
    no warnings qw(redefine once);
    local *Test::More::ok     = sub { push @r, [$_[0] ? 1 : 0, 'ok', @_]; $_[0] };
    local *Test::More::is     = sub {
        my $ok = (!defined $_[0] && !defined $_[1])
              || (defined $_[0] && defined $_[1] && $_[0] eq $_[1]);
        push @r, [$ok ? 1 : 0, 'is', @_]; $ok };
    local *Test::More::isnt   = sub { push @r, [($_[0] // '') ne ($_[1] // '') ? 1 : 0, 'isnt', @_] };
    local *Test::More::like   = sub { push @r, [($_[0] // '') =~ $_[1] ? 1 : 0, 'like', @_] };
    local *Test::More::unlike = sub { push @r, [($_[0] // '') !~ $_[1] ? 1 : 0, 'unlike', @_] };
    local *Test::More::pass   = sub { push @r, [1, 'pass', @_] };
    local *Test::More::fail   = sub { push @r, [0, 'fail', @_] };
    local *Test::More::diag   = sub { };
    local *Test::Nginx::Socket::bail_out = sub { die "BAIL: @_\n" };
    local $SIG{__WARN__} = sub { };
    $code->();
    return \@r;
}

sub outcomes { join '', map { $_->[0] } @{ $_[0] } }

my $parse = \&Test::Nginx::Socket::_parse_response;
my $res_of = sub { ($parse->('t', @_))[0] };

# --- requests ----------------------------------------------------------------
{
    my $reqs = Test::Nginx::Socket::_block_requests(FakeBlock->new(
        request => "# a comment\n\nPOST /t\n  body with spaces \n\n",
        more_headers => "X-A: 1\nX-B:2"));
    is($reqs->[0][0]{value},
       "POST /t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
       . "X-A: 1\r\nX-B: 2\r\nContent-Length: 16\r\n\r\nbody with spaces",
       'request: comment dropped, defaults, body trimmed, Content-Length');

    $reqs = Test::Nginx::Socket::_block_requests(FakeBlock->new(
        request => "PUT /t HTTP/1.0\n body \n",
        more_headers => "Content-Length: 7\nHost: h\nConnection: keep"));
    is($reqs->[0][0]{value},
       "PUT /t HTTP/1.0\r\nContent-Length: 7\r\nHost: h\r\nConnection: keep"
       . "\r\n\r\n body \n",
       'request: own Content-Length, Host, Connection: body as given');

    $reqs = Test::Nginx::Socket::_block_requests(FakeBlock->new(
        request => ["GET /a", "GET /b"], more_headers => ["X-N: 0", "X-N: 1"]));
    is(scalar @$reqs, 2, 'array of requests: one connection each');
    like($reqs->[1][0]{value}, qr{^GET /b HTTP/1\.1\r\n.*X-N: 1\r\n}s,
         'array of requests: more_headers per request');

    $reqs = Test::Nginx::Socket::_block_requests(FakeBlock->new(
        pipelined_requests => ["GET /a", "GET /b"]));
    is($reqs->[0][0]{value},
       "GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
       . "GET /b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
       'pipelined_requests: one connection, keep-alive but the last');

    $reqs = Test::Nginx::Socket::_block_requests(FakeBlock->new(
        request => [["POST /p\nab", { value => "cd", delay_before => 0.1 }]]));
    is_deeply([map { $_->{value} } @{ $reqs->[0] }],
              ["POST /p HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
               . "Content-Length: 4\r\n\r\nab", "cd"],
              'packets: headers in the first, body split where it was');
    is($reqs->[0][1]{delay_before}, 0.1, 'packets: delay_before kept');

}
{
    my $died = eval { record(sub { Test::Nginx::Socket::_block_requests(
        FakeBlock->new(request => ["GET /a", "GET /b"],
                       more_headers => ["X-N: 0"])) }); 1 } ? '' : $@;
    like($died, qr/^BAIL: --- more_headers lacks data/,
         'more_headers array shorter than the requests: bail out');
}

# --- responses ---------------------------------------------------------------
{
    my ($r, $raw, $left) = $parse->('t',
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2"
        . "\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nHTTP/1.1 204", 0);
    is($r->content, 'hello, world', 'chunked body decoded');
    is(scalar $r->header('x-a'), '1, 2', 'repeated headers joined');
    is($raw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n"
             . "X-A: 2\r\n", 'raw headers: status line and header lines');
    is($left, 'HTTP/1.1 204', 'bytes after the last chunk kept');

    my $rec = record(sub { $parse->('t', "HTTP/1.1 200 OK\r\nTransfer-Encoding:"
                                    . " chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n", 0) });
    is(outcomes($rec), '0', 'chunk extensions are not accepted (as there)');
    $rec = record(sub { $parse->('t', "HTTP/1.1 200 OK\r\nTransfer-Encoding:"
                                 . " chunked\r\n\r\n5\r\nhel", 0) });
    is(outcomes($rec), '0', 'truncated chunk: a failure');

    local $SIG{__WARN__} = sub { };
    my (undef, undef, undef, $short) = $parse->('t',
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 0);
    is($short, 1, 'body shorter than Content-Length');
    (undef, undef, undef, $short) = $parse->('t',
        "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", 1);
    is($short, undef, 'HEAD: no body expected');
    ($r, undef, $left) = $parse->('t',
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nlonger", 0);
    is($r->content . "|$left", 'lo|nger', 'bytes beyond Content-Length');
    is($res_of->("HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", 0)->code,
       304, '304 parsed');
    is($res_of->('', 0)->code, undef, 'no response: no status');
}

# --- checks ------------------------------------------------------------------
my $res = $res_of->("HTTP/1.1 200 OK\r\nX-Foo: bar\r\nX-Empty: \r\n"
                    . "Content-Length: 3\r\n\r\nabc", 0);
my $raw_headers = "HTTP/1.1 200 OK\r\nX-Foo: bar\r\nX-Empty: \r\n"
                  . "Content-Length: 3\r\n";
sub check_headers {
    my %s = @_;
    return record(sub { Test::Nginx::Socket::_check_response_headers(
        FakeBlock->new(%s), $res, $raw_headers, 0, 0) });
}
is(outcomes(check_headers(response_headers_like => "X-Foo: ba")), '0',
   'response_headers_like is anchored: "ba" does not match "bar"');
is(outcomes(check_headers(response_headers_like => "X-Foo: b.r\n!X-Empty\n"
                                                   . "!X-None")),
   '111', 'response_headers_like: "!Name" passes for empty and absent');
my $rec = check_headers(response_headers => "X-Foo: bar",
                        response_headers_like => "X-Foo: nope");
is(outcomes($rec) . " $rec->[0][1]", '1 is',
   'response_headers_like is ignored when response_headers is there');
# (checked in the order of the names: X-Foo, then x-foo)
is(outcomes(check_headers(response_headers => "!x-foo\n!X-Foo")), '01',
   '"!Name" looks for "Name:" in the raw headers, case-sensitively');
is(outcomes(check_headers(response_headers => "X-Foo: bar\nX-Foo: bar")),
   '1', 'a header named twice is checked once');

sub check_response {
    my ($res, %s) = @_;
    my $block = FakeBlock->new(%s);
    return record(sub {
        Test::Nginx::Socket::_check_error_code($block, $res, 0, 0);
        Test::Nginx::Socket::_transform_response_body($block, $res, 0);
        Test::Nginx::Socket::_check_response_body($block, $res, 0, 0, 0);
    });
}
is(outcomes(check_response($res)), '1', 'status 200 checked by default');
is(outcomes(check_response($res, error_code => "200\n")), '0',
   'error_code is compared as it is (a trailing newline fails there too)');
is(outcomes(check_response($res, response_body => 'abc',
                           response_body_like => 'nope')), '11',
   'response_body_like is ignored when response_body is there');
is(outcomes(check_response($res, response_body_like => "^abc\$\n")), '10',
   'a text response_body_like keeps its trailing newline');
is(outcomes(check_response($res, response_body_filters => 'uc length',
                           response_body => '3')), '11',
   'response_body_filters run before the body checks');
my $died = eval { record(sub {
    Test::Nginx::Socket::_check_error_code(
        FakeBlock->new(error_code => 200), $res, 1, 1) }); 1 } ? '' : $@;
like($died, qr/^BAIL: .*should be arrays as well/,
     'several requests: a scalar expectation bails out');

{
    my @lines = ("2026/01/01 [error] 1#1: open() \"/a\" failed\n",
                 "2026/01/01 [error] 1#1: open() \"/b\" failed\n");
    my $rec = record(sub { Test::Nginx::Socket::_check_log_patterns(
        't', 'error.log', \@lines, "open()\n[warn]", "failed\n[alert]", 0) });
    is(outcomes($rec), '10001',
       'error_log: a test per pattern; no_error_log: a failure per line');
}

done_testing();
