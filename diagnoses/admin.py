from django.contrib import admin

from .models import Diagnosis, Mole, Review

admin.site.register(Mole)
admin.site.register(Diagnosis)
admin.site.register(Review)
