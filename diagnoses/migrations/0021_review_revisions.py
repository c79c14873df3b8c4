"""ReviewRevision: a review as it stood before a clinician corrected it."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('diagnoses', '0020_review_reviewer_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ReviewRevision',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reviewer_name', models.CharField(blank=True, max_length=150)),
                ('verdict', models.CharField(choices=[('agree', 'Agree with the model'), ('disagree', 'Disagree with the model'), ('unclear', 'Cannot tell from this photo')], max_length=10)),
                ('label', models.CharField(blank=True, choices=[('akiec', 'Actinic keratosis / intraepithelial carcinoma'), ('bcc', 'Basal cell carcinoma'), ('bkl', 'Benign keratosis'), ('df', 'Dermatofibroma'), ('mel', 'Melanoma'), ('nv', 'Melanocytic nevus'), ('vasc', 'Vascular lesion')], max_length=5, verbose_name="clinician's label")),
                ('recommendation', models.CharField(choices=[('routine', 'Routine check'), ('monitor', 'Monitor for changes'), ('new_photo', 'Take a new photo'), ('dermatologist_soon', 'See a dermatologist soon'), ('urgent', 'Urgent: see a doctor now')], max_length=20)),
                ('note', models.TextField(blank=True, verbose_name='note to the patient')),
                ('reviewed_at', models.DateTimeField()),
                ('model_version', models.CharField(blank=True, max_length=100, verbose_name='model version reviewed')),
                ('superseded_at', models.DateTimeField()),
                ('diagnosis', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='review_revisions', to='diagnoses.diagnosis')),
                ('reviewer', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-reviewed_at'],
            },
        ),
    ]
